'''The robot interface the runner drives, real or simulated.

Small on purpose (like LeRobot's): ``connect``, ``obs_spec`` / ``action_spec``,
``get_observation() -> (obs, t_monotonic)``, ``send_action(a) -> a_sent``, ``disconnect``.
Episodic hooks (``reset``, ``status``) have defaults that suit a real robot operated by a person.

Adapter template for real hardware
----------------------------------
Copy this, fill in the three marked places, point ``conf/robot/<name>.yaml``'s ``_target_`` at it::

    class MyArm(Robot):
        def __init__(self, spec: EnvSpec, host: str = "192.168.1.10", max_relative_target: float = 0.05):
            super().__init__(spec, hold=["last"] * spec.action_dim)  # position targets: hold = repeat
            self.host, self.max_rel = host, max_relative_target

        def connect(self):
            self._arm = vendor_sdk.connect(self.host)        # (1) open the link, home if needed

        def get_observation(self):
            t = time.monotonic()                               # stamp when the state was *measured*
            q = self._arm.read_joint_positions()               # (2) read sensors, raw units, float32
            img = self._camera.latest_frame()                  # uint8 (H, W, 3); use its own timestamp
            return {"joint_pos": q.astype(np.float32), "agentview_image": img}, t

        def send_action(self, a):
            a = np.clip(a, self.low, self.high)                # the device's own limits, always
            self._arm.command_joint_positions(a)               # (3) non-blocking command
            return a                                           # what was actually sent

        def disconnect(self):
            self._arm.stop(); self._arm.close()

Rules for adapters: ``get_observation`` and ``send_action`` must return within a small fraction of
the control period (no blocking waits for motion to finish); timestamps come from
``time.monotonic()`` taken when the data was measured (subtract known sensor latency); the robot's
own hardware limits stay on, the runner's safety layer is an extra layer, not a replacement.
'''

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import ConfigError


@dataclass
class RobotStatus:
    """Episode bookkeeping after the latest step: ``done`` ends the episode."""

    done: bool = False
    success: bool = False
    reward: float = 0.0
    steps: int = 0


class Robot(abc.ABC):
    """Base class. ``hold``: per action dim, ``"last"`` (repeat the last safe value: position
    targets, gripper) or ``"zero"`` (velocity / delta commands); one string applies to all dims."""

    def __init__(self, spec: EnvSpec, hold: str | Sequence[str] = "last"):
        self._spec = spec
        self.low = np.asarray(spec.action_low, np.float32)
        self.high = np.asarray(spec.action_high, np.float32)
        modes = [hold] * spec.action_dim if isinstance(hold, str) else list(hold)
        if len(modes) != spec.action_dim or any(m not in ("last", "zero") for m in modes):
            raise ConfigError(f"robot.hold must be 'last', 'zero' or a list of {spec.action_dim} of them; got {hold!r}.")
        self._zero_dims = np.array([m == "zero" for m in modes])

    # -- spec -----------------------------------------------------------------------------------
    @property
    def obs_spec(self) -> EnvSpec:
        """The observations this robot produces (keys, shapes, dtypes)."""
        return self._spec

    @property
    def action_spec(self) -> EnvSpec:
        """Same spec object; the action part (``action_dim``, bounds) is what counts."""
        return self._spec

    # -- lifecycle ------------------------------------------------------------------------------
    @abc.abstractmethod
    def connect(self) -> None:
        """Open the link to the robot."""

    @abc.abstractmethod
    def get_observation(self) -> tuple[dict[str, np.ndarray], float]:
        """(obs dict per ``obs_spec``, monotonic time in seconds at which it was measured)."""

    @abc.abstractmethod
    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Command ``action`` (A,) without blocking; return the action actually sent."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Stop motion and close the link (idempotent)."""

    # -- episodes (defaults suit a real robot) --------------------------------------------------
    def reset(self, seed: int | None = None) -> None:  # noqa: B027 - optional hook
        """Bring the scene to a start state (a person does it on a real robot)."""

    def status(self) -> RobotStatus:
        """Episode status after the latest step (a real robot never ends an episode by itself)."""
        return RobotStatus()

    def hold_action(self, last_safe: np.ndarray | None) -> np.ndarray:
        """The action that keeps the robot where it is, given the last safe action sent."""
        a = np.zeros(self._spec.action_dim, np.float32) if last_safe is None else np.asarray(last_safe, np.float32).copy()
        a[self._zero_dims] = 0.0
        return np.clip(a, self.low, self.high)

    def __enter__(self) -> "Robot":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()


def obs_subset(obs: Mapping[str, np.ndarray], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Only ``keys`` from ``obs`` (the policy may use fewer keys than the robot gives)."""
    return {k: obs[k] for k in keys}
