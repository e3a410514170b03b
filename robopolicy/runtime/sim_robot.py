"""A simulated robot: any robopolicy task environment stepped against the wall clock.

The environment advances one ``env.step`` every ``1 / control_hz`` seconds of *wall-clock* time,
whatever the runner does, with the latest action sent held in between (zero-order hold), as a real
controller would. Stepping is lazy: each call first runs the steps whose time has come, so no extra
thread competes for the two CPU cores, and a stalled runner finds the simulation moved on.

Timing model (``anchor`` = the first ``send_action`` after ``reset``; the robot is at rest before):

* step ``j`` happens at ``anchor + (j + phase) / control_hz`` with the action held at that moment;
  with ``phase=0.5`` (conf/robot/sim.yaml) an action sent within half a period of a control tick is applied
  at the next step, so a runner at ``control_hz`` reproduces the synchronous evaluation loop;
* ``get_observation()`` at time ``t`` returns the newest state produced by ``t - obs_latency_s``,
  stamped ``t - obs_latency_s`` (sample-and-hold); camera keys only change at ``camera_hz``
  (the frame of the newest camera tick), so a slow camera shows older images.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Callable

import gymnasium as gym
import numpy as np

from robopolicy.envs.spec import EnvSpec
from robopolicy.runtime.clock import now
from robopolicy.runtime.robot import NotConnectedError, Robot, RobotStatus


class SimRobot(Robot):
    """env_factory: () -> gymnasium env with dict observations and ``info["success"]``.

    The settings have no defaults here: they are conf/robot/sim.yaml's (:meth:`from_defaults` reads
    them for tests, tools and library callers; ``robopolicy-deploy robot=sim`` composes them).
    ``time_fn`` is the clock (a fake one in tests).
    """

    def __init__(self, env_factory: Callable[[], gym.Env], spec: EnvSpec, *, control_hz: float | None,
                 obs_latency_s: float, camera_hz: float | None, phase: float, stop_on_success: bool,
                 success_extra_steps: int, max_episode_steps: int | None, hold, seed: int,
                 time_fn: Callable[[], float] = now):
        super().__init__(spec, hold=hold)
        self._factory = env_factory
        self.control_hz = float(control_hz or spec.control_hz)
        self.dt_s = 1.0 / self.control_hz
        self.obs_latency_s = max(0.0, float(obs_latency_s))
        self.camera_hz = float(camera_hz) if camera_hz else None
        self.phase = float(phase)
        self.stop_on_success = bool(stop_on_success)
        self.success_extra_steps = int(success_extra_steps)
        self.max_episode_steps = int(max_episode_steps or spec.max_episode_steps)
        self.seed = int(seed)
        self._time = time_fn
        self.env: gym.Env | None = None
        keep = math.ceil((self.obs_latency_s + (1.0 / self.camera_hz if self.camera_hz else 0.0)) / self.dt_s) + 3
        self._states: deque = deque(maxlen=keep)  # (t_produced, obs)
        self._anchor: float | None = None
        self._steps = 0
        self._held: np.ndarray | None = None
        self._status = RobotStatus()
        self._success_steps = 0

    @staticmethod
    def settings(**overrides) -> dict:
        """conf/robot/sim.yaml's settings as SimRobot keyword arguments, ``overrides`` over them."""
        from robopolicy.defaults import constructor_kwargs, group_config

        settings = constructor_kwargs(group_config("robot", "sim", overrides))
        settings.pop("render")  # make_sim_robot's: how a task builds its environment
        return settings

    @classmethod
    def from_defaults(cls, env_factory: Callable[[], gym.Env], spec: EnvSpec, time_fn: Callable[[], float] = now,
                      **overrides) -> "SimRobot":
        """A SimRobot with conf/robot/sim.yaml's settings, ``overrides`` (e.g. ``stop_on_success=False``) over them."""
        return cls(env_factory, spec, time_fn=time_fn, **cls.settings(**overrides))

    # -- Robot ----------------------------------------------------------------------------------
    def connect(self) -> None:
        if self.env is None:
            self.env = self._factory()
            self.reset(self.seed)

    def disconnect(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None

    def reset(self, seed: int | None = None) -> None:
        self._require_env()
        obs, _ = self.env.reset(seed=self.seed if seed is None else int(seed))
        self._states.clear()
        self._states.append((-math.inf, _copy(obs)))
        self._anchor = None
        self._steps = 0
        self._held = None
        self._status = RobotStatus()
        self._success_steps = 0

    def get_observation(self) -> tuple[dict[str, np.ndarray], float]:
        self._require_env()
        t = self._time()
        self._advance(t)
        t_seen = t - self.obs_latency_s
        obs = dict(self._newest(t_seen))
        if self.camera_hz and self._spec.rgb_keys:
            t_cam = math.floor(t_seen * self.camera_hz) / self.camera_hz
            frame = self._newest(t_cam)
            for k in self._spec.rgb_keys:
                obs[k] = frame[k]
        return obs, t_seen

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self._require_env()
        t = self._time()
        a = self.action_spec.clip(action)
        if self._anchor is None:
            self._anchor = t
        else:
            self._advance(t)
        self._held = a
        return a.copy()

    def status(self) -> RobotStatus:
        self._advance(self._time())
        return RobotStatus(**vars(self._status))

    def _require_env(self) -> None:
        if self.env is None:
            raise NotConnectedError("The simulated robot is not connected; call connect() first (again after disconnect()).")

    # -- simulation -----------------------------------------------------------------------------
    def step_time(self, j: int) -> float:
        """Wall-clock time of step j of this episode (after the first action)."""
        assert self._anchor is not None
        return self._anchor + (j + self.phase) * self.dt_s

    def _advance(self, t: float) -> None:
        """Run every step whose time is <= t with the action held at that time."""
        if self._anchor is None or self._held is None or self.env is None:
            return
        while not self._status.done and self.step_time(self._steps) <= t:
            t_step = self.step_time(self._steps)
            obs, reward, terminated, truncated, info = self.env.step(self._held)
            self._steps += 1
            self._states.append((t_step, _copy(obs)))
            st = self._status
            st.steps = self._steps
            st.reward += float(reward)
            if bool(info.get("success", False)):
                st.success = True
            if st.success:
                self._success_steps += 1
            st.done = bool(terminated or truncated or self._steps >= self.max_episode_steps
                           or (self.stop_on_success and self._success_steps > self.success_extra_steps))

    def _newest(self, t: float) -> dict[str, np.ndarray]:
        for t_prod, obs in reversed(self._states):
            if t_prod <= t:
                return obs
        return self._states[0][1]


def _copy(obs) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in obs.items()}


def make_sim_robot(task, *, render: bool | None, **kwargs) -> SimRobot:
    """A :class:`SimRobot` for a robopolicy ``Task`` (or task config); kwargs as for SimRobot.
    Values: conf/robot/sim.yaml (``robopolicy.defaults.group_config("robot", "sim", ...)`` in Python)."""
    from robopolicy.envs import make_task

    task = make_task(task)
    return SimRobot(lambda: task.make_env(render=render), task.spec, **kwargs)
