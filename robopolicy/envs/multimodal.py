"""The embedded multimodal task: a point mass goes around a block, on the left or on the right.

Scene: ``assets/multimodal.xml``. The agent starts below a wide block and must reach a goal
region above it (start and goal jittered per seed). The scripted expert picks a side at random
and follows a smooth path of waypoints with proportional control, so demonstrations hold two
equally good modes. Averaging them (what a mean-squared-error policy learns) drives straight into
the block and fails: :meth:`MultimodalTask.make_averaged_expert` shows it.

Observation ``state`` (6,) float32 (privileged): agent xy, agent velocity xy, goal xy;
``agent_pos`` (2,): agent xy (proprioception); cameras by name (the scene's ``top``), see
:mod:`robopolicy.envs.observations`. With ``task.obs=visuomotor`` the goal is seen only in the image. Action (2,) in [-1, 1]:
commanded velocity as a fraction of ``max_speed``. ``info["mode"]`` is ``"left"``/``"right"``
once the agent has been beside the block (inside its y-band, outside its x-extent), else None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from robopolicy.envs import render as _render  # sets MUJOCO_GL before mujoco loads

import gymnasium as gym
import mujoco
import numpy as np

from robopolicy.envs import observations as _obs
from robopolicy.envs.base import Expert, Task
from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import TaskError
from robopolicy.resources import data_path

ACTION_DIM = 2
STATE_DIM = 6
PROPRIO_DIM = 2


def _resolve_scene(scene: str) -> Path:
    path = Path(scene)
    if not path.is_absolute():
        path = data_path(path)  # relative to the package data (checkout root or installed package)
    if not path.is_file():
        raise TaskError(f"Scene file {str(path)!r} does not exist; set task.scene to an MJCF file such as assets/multimodal.xml.")
    return path


class MultimodalEnv(_render.CameraEnvMixin, gym.Env):
    """Gymnasium environment for the scene; see the module docstring for observations and actions."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        scene: Path,
        max_episode_steps: int,
        control_hz: float,
        max_speed: float,
        goal_radius: float,
        start_low: Sequence[float],
        start_high: Sequence[float],
        goal_low: Sequence[float],
        goal_high: Sequence[float],
        layout: _obs.ObsLayout | None = None,
    ):
        self.model = mujoco.MjModel.from_xml_path(str(scene))
        self.data = mujoco.MjData(self.model)
        self.n_substeps = max(1, int(round(1.0 / (float(control_hz) * self.model.opt.timestep))))
        self.max_episode_steps = int(max_episode_steps)
        self.max_speed = float(max_speed)
        self.goal_radius = float(goal_radius)
        self._start = (np.asarray(start_low, np.float64), np.asarray(start_high, np.float64))
        self._goal_box = (np.asarray(goal_low, np.float64), np.asarray(goal_high, np.float64))
        self.obstacle = obstacle_box(self.model)
        self._goal_site = self.model.site("goal").id
        self.layout = layout or _obs.ObsLayout(state=True, proprio=False, cameras=())
        self._rig = _obs.CameraRig(self.model, self.layout)
        self.observation_space = _obs.gym_spaces(self.layout, STATE_DIM, PROPRIO_DIM)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.render_mode = "rgb_array" if self._rig else None
        self.goal = np.zeros(2)
        self.mode: str | None = None
        self._t = 0

    @property
    def agent_xy(self) -> np.ndarray:
        return self.data.qpos[:2].copy()

    def privileged_state(self) -> np.ndarray:
        """(6,) float32 agent xy, agent velocity xy, goal xy, whatever the observation layout."""
        return np.concatenate([self.data.qpos[:2], self.data.qvel[:2], self.goal]).astype(np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        state = self.privileged_state()
        return _obs.assemble(self.layout, state, state[:PROPRIO_DIM], self._rig, self.data)

    def _update_mode(self) -> None:
        cx, cy, hx, hy = self.obstacle
        x, y = self.data.qpos[:2]
        if abs(y - cy) <= hy and abs(x - cx) >= hx:
            self.mode = "left" if x < cx else "right"

    def _success(self) -> bool:
        return bool(np.linalg.norm(self.data.qpos[:2] - self.goal) < self.goal_radius)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        start = self.np_random.uniform(*self._start)
        self.goal = self.np_random.uniform(*self._goal_box)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:2] = start
        self.model.site_pos[self._goal_site, :2] = self.goal
        mujoco.mj_forward(self.model, self.data)
        self.mode = None
        self._t = 0
        return self._obs(), {"success": self._success(), "mode": None}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(ACTION_DIM), -1.0, 1.0)
        self.data.ctrl[:] = action * self.max_speed
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        self._t += 1
        self._update_mode()
        success = self._success()
        truncated = self._t >= self.max_episode_steps
        return self._obs(), float(success), False, truncated, {"success": success, "mode": self.mode}



def obstacle_box(model: mujoco.MjModel) -> tuple[float, float, float, float]:
    """(centre x, centre y, half width, half height) of the geom named ``obstacle``."""
    g = model.geom("obstacle")
    return float(g.pos[0]), float(g.pos[1]), float(g.size[0]), float(g.size[1])


class MultimodalExpert(Expert):
    """Goes around the block on one side: waypoints beside its two corners, then the goal.

    side: -1 (left), +1 (right) or None to pick one with ``rng`` at every :meth:`reset`.
    Proportional control toward the current waypoint at up to full speed, plus Gaussian noise of
    ``noise_std``; the next waypoint is taken once within ``switch_radius`` or once passed in y.
    """

    def __init__(self, rng, obstacle, agent_radius: float, clearance: float, switch_radius: float,
                 gain: float, noise_std: float, side: int | None = None):
        self.rng = rng
        self.obstacle = obstacle
        self.offset = agent_radius + clearance
        self.switch_radius = float(switch_radius)
        self.gain = float(gain)
        self.noise_std = float(noise_std)
        self.fixed_side = side
        self.side = side if side is not None else -1
        self._i = 0

    def reset(self) -> None:
        self.side = self.fixed_side if self.fixed_side is not None else int(self.rng.choice([-1, 1]))
        self._i = 0

    def waypoints(self, goal: np.ndarray) -> list[np.ndarray]:
        cx, cy, hx, hy = self.obstacle
        x = cx + self.side * (hx + self.offset)
        return [np.array([x, cy - hy - self.offset]), np.array([x, cy + hy + self.offset]), np.asarray(goal, np.float64)]

    def clean_action(self, obs: Mapping[str, np.ndarray], env: gym.Env | None = None) -> np.ndarray:
        """The noiseless command toward the current waypoint (advances the waypoint index).

        Reads ``obs["state"]``, or the environment's privileged state when the observations hide it.
        """
        state = np.asarray(obs["state"] if "state" in obs else env.unwrapped.privileged_state(), np.float64)
        pos, goal = state[:2], state[4:6]
        wps = self.waypoints(goal)
        while self._i < len(wps) - 1 and (
            np.linalg.norm(wps[self._i] - pos) < self.switch_radius or pos[1] > wps[self._i][1]
        ):
            self._i += 1
        err = wps[self._i] - pos
        dist = float(np.linalg.norm(err))
        if dist < 1e-9:
            return np.zeros(ACTION_DIM)
        return err / dist * min(1.0, self.gain * dist)

    def act(self, obs: Mapping[str, np.ndarray], env: gym.Env) -> np.ndarray:
        a = self.clean_action(obs, env) + self.rng.normal(0.0, self.noise_std, ACTION_DIM)
        return np.clip(a, -1.0, 1.0).astype(np.float32)


class AveragedExpert(Expert):
    """The mean of the left and the right expert's commands: what averaging the modes does."""

    def __init__(self, left: MultimodalExpert, right: MultimodalExpert):
        self.left, self.right = left, right

    def reset(self) -> None:
        self.left.reset()
        self.right.reset()

    def act(self, obs: Mapping[str, np.ndarray], env: gym.Env) -> np.ndarray:
        a = 0.5 * (self.left.clean_action(obs, env) + self.right.clean_action(obs, env))
        return np.clip(a, -1.0, 1.0).astype(np.float32)


class MultimodalTask(Task):
    """The multimodal point-mass task (``tasks/multimodal.yaml``); arguments as in that file."""

    def __init__(
        self,
        *,
        name: str,
        scene: str,
        max_episode_steps: int,
        control_hz: float,
        max_speed: float,
        goal_radius: float,
        start_low: Sequence[float],
        start_high: Sequence[float],
        goal_low: Sequence[float],
        goal_high: Sequence[float],
        expert: Mapping[str, Any] | None,
        obs: str,
        cameras: Sequence[str] | None,
        camera_size: int,
        camera_rotate_180: Sequence[str] | None,
        image: Mapping[str, Any] | None,
    ):
        self.name = str(name)
        self.scene = _resolve_scene(scene)
        if int(max_episode_steps) < 1 or float(control_hz) <= 0 or float(max_speed) <= 0:
            raise TaskError("task.max_episode_steps, task.control_hz and task.max_speed must be positive; fix them in the task config.")
        self.max_episode_steps = int(max_episode_steps)
        self.control_hz = float(control_hz)
        self.max_speed = float(max_speed)
        self.goal_radius = float(goal_radius)
        self.boxes = {k: tuple(float(v) for v in b) for k, b in
                      dict(start_low=start_low, start_high=start_high, goal_low=goal_low, goal_high=goal_high).items()}
        self.expert_cfg = dict(expert)  # clearance, switch_radius, gain, noise_std: tasks/multimodal.yaml
        self.image = dict(image or {"enabled": False})  # its settings: tasks/multimodal.yaml (image.*)
        self.obs_args = (str(obs), list(cameras or []), int(camera_size), list(camera_rotate_180 or []))
        self.layout(None)  # check the settings now
        model = mujoco.MjModel.from_xml_path(str(self.scene))
        self.obstacle = obstacle_box(model)
        self.agent_radius = float(model.geom("agent").size[0])

    def layout(self, render: bool | None) -> _obs.ObsLayout:
        return _obs.obs_layout(*self.obs_args, image=self.image, render=render)

    @property
    def spec(self) -> EnvSpec:
        layout = self.layout(None)
        return EnvSpec(obs=_obs.obs_spec(layout, STATE_DIM, PROPRIO_DIM), action_dim=ACTION_DIM, action_low=(-1.0,) * ACTION_DIM, action_high=(1.0,) * ACTION_DIM,
                       max_episode_steps=self.max_episode_steps, control_hz=self.control_hz, name=self.name,
                       # velocity commands: holding still is a zero command
                       extra={"hold": "zero", "suite": "multimodal", "modes": ["left", "right"], **_obs.spec_extra(layout)})

    def make_env(self, render: bool | None = None) -> MultimodalEnv:
        return MultimodalEnv(self.scene, self.max_episode_steps, self.control_hz, self.max_speed, self.goal_radius,
                             layout=self.layout(render), **self.boxes)

    def make_expert(self, rng: np.random.Generator, side: int | None = None) -> MultimodalExpert:
        """Expert that picks left/right with ``rng`` each episode (or always ``side``: -1 left, +1 right)."""
        return MultimodalExpert(rng, self.obstacle, self.agent_radius, side=side, **self.expert_cfg)

    def make_averaged_expert(self, rng: np.random.Generator) -> AveragedExpert:
        """The failing baseline: the mean of the left and the right expert."""
        return AveragedExpert(self.make_expert(rng, side=-1), self.make_expert(rng, side=+1))
