'''The robot interface the runner drives, real or simulated.

Small on purpose (like LeRobot's): ``connect``, ``obs_spec`` / ``action_spec``,
``get_observation() -> (obs, t_monotonic)``, ``send_action(a) -> a_sent``, ``disconnect``.
Episodic hooks (``reset``, ``status``) have defaults that suit a real robot operated by a person.

Specs: ``obs_spec`` (an :class:`~robopolicy.envs.spec.EnvSpec`: observation keys, shapes, dtypes,
control rate) and ``action_spec`` (an :class:`ActionSpec`: shape, dtype, bounds, how to hold still).
``docs/OWN_ROBOT.md`` walks through writing an adapter for real hardware, checking it with
``robopolicy-check-robot`` and recording with it.

Rules for adapters: ``get_observation`` and ``send_action`` must return within a small fraction of
the control period (no blocking waits for motion to finish); timestamps come from
``time.monotonic()`` taken when the data was measured (subtract known sensor latency); the robot's
own hardware limits stay on, the runner's safety layer is an extra layer, not a replacement; calls
before ``connect`` or after ``disconnect`` raise :class:`NotConnectedError`.
'''

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from robopolicy.envs.base import Task
from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import ConfigError, RobopolicyError, TaskError


class NotConnectedError(RobopolicyError):
    """A robot call was made before ``connect()`` or after ``disconnect()``."""


HOLD_MODES = ("last", "zero")


@dataclass(frozen=True)
class ActionSpec:
    """The commands a robot accepts: float vectors of ``shape`` within ``[low, high]``.

    ``hold``: per dim, how to keep the robot still: ``"last"`` repeats the last safe value
    (position targets, gripper), ``"zero"`` sends 0 (velocity or delta commands).
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    hold: tuple[str, ...]
    dtype: str = "float32"

    def __post_init__(self):
        if len(self.low) != len(self.high) or any(lo > hi for lo, hi in zip(self.low, self.high)):
            raise ConfigError(f"Action bounds low={list(self.low)} high={list(self.high)} must have equal lengths and "
                              "low <= high; fix the robot's action_low/action_high.")
        if len(self.hold) != len(self.low) or any(m not in HOLD_MODES for m in self.hold):
            raise ConfigError(f"robot.hold must be 'last', 'zero' or a list of {len(self.low)} of them; got {list(self.hold)!r}.")

    @classmethod
    def from_env_spec(cls, spec: EnvSpec, hold: str | Sequence[str] | None = None) -> "ActionSpec":
        """Bounds from ``spec``; ``hold`` (one mode or one per dim) defaults to ``spec.extra["hold"]``, else "last"."""
        hold = spec.extra.get("hold", "last") if hold is None else hold
        modes = [hold] * spec.action_dim if isinstance(hold, str) else list(hold)
        return cls(tuple(float(x) for x in spec.action_low), tuple(float(x) for x in spec.action_high), tuple(modes))

    @property
    def shape(self) -> tuple[int]:
        return (len(self.low),)

    @property
    def dim(self) -> int:
        return len(self.low)

    @property
    def low_array(self) -> np.ndarray:
        return np.asarray(self.low, self.dtype)

    @property
    def high_array(self) -> np.ndarray:
        return np.asarray(self.high, self.dtype)

    @property
    def zero_dims(self) -> np.ndarray:
        """(A,) bool: the dims held at 0."""
        return np.array([m == "zero" for m in self.hold])

    def clip(self, action: np.ndarray) -> np.ndarray:
        """(A,) -> (A,) within the bounds, in ``dtype``."""
        return np.clip(np.asarray(action, self.dtype).reshape(self.shape), self.low_array, self.high_array)

    def contains(self, action: np.ndarray, atol: float = 1e-6) -> bool:
        a = np.asarray(action)
        return a.shape == self.shape and bool(np.all(a >= self.low_array - atol) and np.all(a <= self.high_array + atol))

    def hold_action(self, last_safe: np.ndarray | None = None) -> np.ndarray:
        """The action that keeps the robot where it is, given the last safe action sent (None: all zeros)."""
        a = np.zeros(self.shape, self.dtype) if last_safe is None else np.asarray(last_safe, self.dtype).reshape(self.shape).copy()
        a[self.zero_dims] = 0.0
        return self.clip(a)


@dataclass
class RobotStatus:
    """Episode bookkeeping after the latest step: ``done`` ends the episode."""

    done: bool = False
    success: bool = False
    reward: float = 0.0
    steps: int = 0


class Robot(abc.ABC):
    """Base class. ``spec``: the observations it produces and its action bounds and control rate;
    ``hold``: per action dim ``"last"`` or ``"zero"`` (see :class:`ActionSpec`); one string applies to
    all dims; None: ``spec.extra["hold"]``, else ``"last"``."""

    def __init__(self, spec: EnvSpec, hold: str | Sequence[str] | None = None):
        self._spec = spec
        self._action_spec = ActionSpec.from_env_spec(spec, hold)
        self.low = self._action_spec.low_array
        self.high = self._action_spec.high_array

    # -- spec -----------------------------------------------------------------------------------
    @property
    def obs_spec(self) -> EnvSpec:
        """The observations this robot produces (keys, shapes, dtypes), its control rate and extras."""
        return self._spec

    @property
    def action_spec(self) -> ActionSpec:
        """The commands it accepts: shape, dtype, bounds, how to hold still."""
        return self._action_spec

    # -- lifecycle ------------------------------------------------------------------------------
    @abc.abstractmethod
    def connect(self) -> None:
        """Open the link to the robot (again after ``disconnect``)."""

    @abc.abstractmethod
    def get_observation(self) -> tuple[dict[str, np.ndarray], float]:
        """(obs dict per ``obs_spec``, monotonic time in seconds at which it was measured).

        Raises :class:`NotConnectedError` when not connected."""

    @abc.abstractmethod
    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Command ``action`` (A,) without blocking; return the action actually sent (clipped to
        ``action_spec``). Raises :class:`NotConnectedError` when not connected."""

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
        return self._action_spec.hold_action(last_safe)

    def __enter__(self) -> "Robot":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()


class RobotTask(Task):
    """The task of a robot with no simulator: its spec, nothing to simulate.

    ``spec``: the :meth:`EnvSpec.to_dict` layout (``obs``, ``action_dim``, ``action_low``,
    ``action_high``, ``max_episode_steps``, ``control_hz``, ``extra``). Training takes the spec
    from here; the robot's adapter can take it from the ``task`` it is given, so the spec is
    written once (docs/OWN_ROBOT.md).
    """

    def __init__(self, name: str, spec: Mapping):
        self.name = str(name)
        self._spec = EnvSpec.from_dict({**dict(spec), "name": self.name})

    @property
    def spec(self) -> EnvSpec:
        return self._spec

    def make_env(self, render: bool | None = None):
        raise TaskError(f"Task {self.name!r} is a real robot with no simulator to evaluate in; set eval.every=0 and "
                        "final_eval.episodes=0 when training, and run the policy with robopolicy-deploy robot=<your robot>.")

    def make_expert(self, rng: np.random.Generator):
        raise TaskError(f"Task {self.name!r} is a real robot with no scripted expert; record demonstrations with "
                        "robopolicy-record robot=<your robot> instead.")


def obs_subset(obs: Mapping[str, np.ndarray], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Only ``keys`` from ``obs`` (the policy may use fewer keys than the robot gives)."""
    return {k: obs[k] for k in keys}
