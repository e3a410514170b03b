"""Tiny stand-ins for tests and benchmarks of the runner: a point-mass environment, a point-mass
robot adapter written directly against the robot interface, and predictors with scripted behaviour
(fine, slow, hanging, raising, NaN).

``PointEnv``: obs ``pos`` (2,) float32; action (2,) in [-1, 1] moves ``pos`` by ``0.05 * a``;
success when within 0.05 of ``goal``. ``GoToGoal`` is a predictor that steers there.
``PointRobot``: the same point as a hand-written :class:`~robopolicy.runtime.robot.Robot` adapter
(velocity commands integrated over wall-clock time), the shape a user's adapter takes.
"""

from __future__ import annotations

import threading
import time

import gymnasium as gym
import numpy as np

from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.runtime.clock import now
from robopolicy.runtime.robot import NotConnectedError, Robot


def point_spec(control_hz: float = 50.0, max_episode_steps: int = 200, hold="zero") -> EnvSpec:
    return EnvSpec(obs={"pos": ObsKeySpec((2,))}, action_dim=2, action_low=(-1.0, -1.0), action_high=(1.0, 1.0),
                   max_episode_steps=max_episode_steps, control_hz=control_hz, name="point", extra={"hold": hold})


class PointEnv(gym.Env):
    GOAL = np.array([0.5, 0.5], np.float32)

    def __init__(self, spec: EnvSpec | None = None):
        self.spec_ = spec or point_spec()
        self.observation_space = gym.spaces.Dict({"pos": gym.spaces.Box(-10, 10, (2,), np.float32)})
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.pos = np.zeros(2, np.float32)
        self.n_steps = 0
        self.actions: list[np.ndarray] = []

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-0.5, 0.0, 2).astype(np.float32)
        self.n_steps = 0
        return {"pos": self.pos.copy()}, {"success": False}

    def step(self, action):
        a = np.asarray(action, np.float32)
        self.actions.append(a.copy())
        self.pos = (self.pos + 0.05 * a).astype(np.float32)
        self.n_steps += 1
        success = bool(np.linalg.norm(self.pos - self.GOAL) < 0.05)
        return {"pos": self.pos.copy()}, float(success), False, False, {"success": success}


class PointRobot(Robot):
    """A point moving at ``speed * a`` units/s (velocity command ``a`` (2,) in [-1, 1], held at zero).

    Observation ``pos`` (2,) float32 integrated up to the call, stamped with the monotonic time of
    the call. Like a real adapter: clips every command, raises NotConnectedError when disconnected.
    """

    def __init__(self, spec: EnvSpec | None = None, speed: float = 0.5, task=None):
        super().__init__(spec or point_spec())
        self.speed = float(speed)
        self._connected = False
        self._pos = np.zeros(2, np.float64)
        self._vel = np.zeros(2, np.float64)
        self._t_last = 0.0

    def connect(self) -> None:
        self._connected = True
        self._t_last = now()

    def disconnect(self) -> None:
        self._vel[:] = 0.0
        self._connected = False

    def _integrate(self) -> float:
        if not self._connected:
            raise NotConnectedError("The point robot is not connected; call connect() first.")
        t = now()
        self._pos += self._vel * (t - self._t_last)
        self._t_last = t
        return t

    def get_observation(self) -> tuple[dict[str, np.ndarray], float]:
        t = self._integrate()
        return {"pos": self._pos.astype(np.float32)}, t

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self._integrate()
        a = self.action_spec.clip(action)
        self._vel = self.speed * a.astype(np.float64)
        return a


class GoToGoal:
    """Predictor: a chunk of ``horizon`` actions towards the goal (proportional control).

    ``delay_s``: sleep per call (a slow policy); ``hang_after``/``raise_after``/``nan_after``: after
    that many calls, hang until released / raise / return NaN. Counts calls.
    """

    obs_keys = ["pos"]
    supports_prefix = False

    def __init__(self, horizon: int = 8, obs_horizon: int = 2, delay_s: float = 0.0, hang_after: int | None = None,
                 raise_after: int | None = None, nan_after: int | None = None, gain: float = 4.0):
        self.horizon, self.obs_horizon, self.delay_s, self.gain = horizon, obs_horizon, delay_s, gain
        self.hang_after, self.raise_after, self.nan_after = hang_after, raise_after, nan_after
        self.calls = 0
        self.release = threading.Event()
        self.seen_prefix: list = []

    def __call__(self, obs, prefix=None):
        self.calls += 1
        self.seen_prefix.append(None if prefix is None else np.array(prefix))
        if self.hang_after is not None and self.calls > self.hang_after:
            self.release.wait()
        if self.raise_after is not None and self.calls > self.raise_after:
            raise RuntimeError("policy exploded (test)")
        if self.delay_s:
            time.sleep(self.delay_s)
        pos = np.asarray(obs["pos"])[0, -1]
        a = np.clip(self.gain * (PointEnv.GOAL - pos), -1, 1)
        out = np.repeat(a[None], self.horizon, 0).astype(np.float32)
        if self.nan_after is not None and self.calls > self.nan_after:
            out[:] = np.nan
        return out


class ConstantPredictor:
    """Chunk whose action i is ``[seq, i]`` (tests can tell which chunk/step an action came from)."""

    obs_keys = ["pos"]
    supports_prefix = True

    def __init__(self, horizon: int = 4, obs_horizon: int = 1):
        self.horizon, self.obs_horizon, self.calls = horizon, obs_horizon, 0
        self.seen_prefix: list = []

    def __call__(self, obs, prefix=None):
        self.calls += 1
        self.seen_prefix.append(None if prefix is None else np.array(prefix))
        return np.stack([np.array([self.calls, i], np.float32) for i in range(self.horizon)]) * 0.01
