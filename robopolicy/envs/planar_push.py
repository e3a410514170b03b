"""Planar pushing: a point-mass pusher moves a round puck onto a target region (``tasks/planar_push.yaml``).

The scene is ``assets/planar_push.xml``. The *semantics* ``(pusher x, pusher y, puck x, puck y)``
in metres set the whole simulator state: pushing is quasi-static (every control step starts from
rest, the way planar-pushing models treat a puck on a table with dry friction), the puck is round
so it needs no angle, and the solver's warm start is off. Hence ``set_semantics(s)`` followed by
``step(a)`` is the simulator's transition function T(s, a), which pair augmentation replays
(robopolicy.semantics.augment).

Observation ``state`` is the semantics (float32, (4,), privileged: it holds the puck);
``agent_pos`` (2,) is the pusher xy (proprioception); cameras by name (``top``) or the legacy
``image`` key (uint8 (H, W, 3)), see :mod:`robopolicy.envs.observations`. Actions (2,) in [-1, 1] are the pusher's target velocity as a fraction of
``max_speed``. ``info["success"]`` is true while the puck centre is within ``success_radius`` of the
target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from robopolicy.envs import render as _render  # noqa: F401  (sets MUJOCO_GL before mujoco loads)

import gymnasium as gym
import mujoco
import numpy as np

from robopolicy.envs import observations as _obs
from robopolicy.envs.base import Expert, Task
from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import TaskError
from robopolicy.resources import asset_path

ASSET = asset_path("planar_push.xml")
SEMANTICS_DIM = 4
PROPRIO_DIM = 2
ACTION_DIM = 2
PUSHER_RADIUS = 0.025
PUCK_RADIUS = 0.04


class PlanarPushEnv(_render.CameraEnvMixin, gym.Env):
    """Gymnasium environment of the planar push scene; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, *, max_episode_steps: int, substeps: int, max_speed: float, target_xy: Sequence[float],
                 success_radius: float, puck_init: Sequence[Sequence[float]], pusher_init: Sequence[Sequence[float]],
                 image: Mapping[str, Any] | None, layout: _obs.ObsLayout | None, xml_path: str | Path = ASSET,
                 model: mujoco.MjModel | None = None):
        # No defaults for the settings: they are tasks/planar_push.yaml's, handed on by PlanarPushTask.
        # ``model``: an already compiled variant of the scene (the "real" environment passes one).
        # ``image`` (legacy, {size, camera}): one camera under the key ``image`` beside ``state``;
        # ``layout`` (from the task's obs settings) replaces it; with neither, state only.
        self.model = model if model is not None else mujoco.MjModel.from_xml_path(str(xml_path))
        self.data = mujoco.MjData(self.model)
        self.max_episode_steps = int(max_episode_steps)
        self.substeps = int(substeps)
        self.max_speed = float(max_speed)
        self.target_xy = np.asarray(target_xy, dtype=np.float64)
        self.success_radius = float(success_radius)
        self.puck_init = np.asarray(puck_init, dtype=np.float64)
        self.pusher_init = np.asarray(pusher_init, dtype=np.float64)
        tgt = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, "target")
        self.model.geom_pos[tgt, :2] = self.target_xy
        self.model.geom_size[tgt, 0] = self.success_radius + PUCK_RADIUS / 2
        if layout is None:
            legacy = None if image is None else {"enabled": True, "camera": "top", **dict(image)}
            layout = _obs.obs_layout("state", [], int((image or {}).get("size", 64)), [], legacy)
        self.layout = layout
        self._rig = _obs.CameraRig(self.model, self.layout)
        self.observation_space = _obs.gym_spaces(self.layout, SEMANTICS_DIM, PROPRIO_DIM)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.render_mode = "rgb_array" if self._rig else None
        self._t = 0

    # -- semantics ---------------------------------------------------------------------------
    def get_semantics(self) -> np.ndarray:
        """(4,) float32: pusher xy, puck xy in metres."""
        return self.data.qpos[:SEMANTICS_DIM].astype(np.float32)

    def set_semantics(self, s: np.ndarray) -> None:
        """Set the full simulator state from semantics (4,): positions, zero velocities, no warm start."""
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if s.shape != (SEMANTICS_DIM,) or not np.all(np.isfinite(s)):
            raise TaskError(f"Semantics must be {SEMANTICS_DIM} finite numbers (pusher xy, puck xy), got {s.tolist()}; pass a (4,) array.")
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:SEMANTICS_DIM] = s.astype(np.float32)
        mujoco.mj_forward(self.model, self.data)

    def puck_to_target(self) -> float:
        return float(np.linalg.norm(self.data.qpos[2:4] - self.target_xy))

    # -- gym API -----------------------------------------------------------------------------
    def _sample_semantics(self) -> np.ndarray:
        rng = self.np_random
        puck = rng.uniform(self.puck_init[0], self.puck_init[1])
        for _ in range(1000):
            pusher = rng.uniform(self.pusher_init[0], self.pusher_init[1])
            if np.linalg.norm(pusher - puck) > PUSHER_RADIUS + PUCK_RADIUS + 0.03:
                break
        return np.concatenate([pusher, puck])

    def privileged_state(self) -> np.ndarray:
        """(4,) float32 semantics, whatever the observation layout."""
        return self.get_semantics()

    def _obs(self) -> dict[str, np.ndarray]:
        s = self.get_semantics()
        return _obs.assemble(self.layout, s, s[:PROPRIO_DIM], self._rig, self.data)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.set_semantics(self._sample_semantics())
        self._t = 0
        return self._obs(), {"success": self.puck_to_target() < self.success_radius}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(ACTION_DIM), -1.0, 1.0)
        # Quasi-static: each control step starts from rest, so the state is the positions alone.
        self.data.qvel[:] = 0.0
        self.data.ctrl[:] = a * self.max_speed
        for _ in range(self.substeps):
            mujoco.mj_step(self.model, self.data)
        self.data.qvel[:] = 0.0
        # Keep the state at float32 precision, so the float32 semantics are the exact state.
        self.data.qpos[:] = self.data.qpos.astype(np.float32)
        self._t += 1
        dist = self.puck_to_target()
        reward = -dist
        info = {"success": dist < self.success_radius, "puck_to_target": dist}
        return self._obs(), float(reward), False, self._t >= self.max_episode_steps, info



class PlanarPushExpert(Expert):
    """Goes behind the puck (orbiting around it when on the wrong side), then pushes it to the target.

    Reads only ``obs["state"]`` (the semantics), so it can run on a mapper's predicted semantics;
    when the observations hide it (``task.obs=visuomotor``) it reads the environment's state.
    ``noise`` adds Gaussian action noise drawn from ``rng`` (a behaviour policy for offline data).
    """

    def __init__(self, target_xy: Sequence[float], rng: np.random.Generator | None = None, noise: float = 0.0,
                 gain: float = 12.0):
        self.target_xy = np.asarray(target_xy, dtype=np.float64)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.noise = float(noise)
        self.gain = float(gain)

    def act(self, obs: Mapping[str, np.ndarray], env: gym.Env | None = None) -> np.ndarray:
        s = np.asarray(obs["state"] if "state" in obs else env.unwrapped.privileged_state(), dtype=np.float64)
        a = self.act_state(s[None])[0]
        if self.noise > 0:
            a = a + self.rng.normal(0.0, self.noise, size=a.shape)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def act_state(self, s: np.ndarray) -> np.ndarray:
        """s: (B, 4) semantics -> (B, 2) noise-free actions in [-1, 1] (vectorised, deterministic)."""
        s = np.asarray(s, dtype=np.float64)
        pusher, puck = s[:, :2], s[:, 2:4]
        to_goal = self.target_xy - puck
        u = to_goal / np.maximum(np.linalg.norm(to_goal, axis=1, keepdims=True), 1e-6)
        contact = PUSHER_RADIUS + PUCK_RADIUS
        behind = puck - (contact + 0.01) * u
        rel = pusher - puck
        dist = np.linalg.norm(rel, axis=1)
        ang_p = np.arctan2(rel[:, 1], rel[:, 0])
        ang_b = np.arctan2(-u[:, 1], -u[:, 0])
        dang = (ang_b - ang_p + np.pi) % (2 * np.pi) - np.pi
        # Far round the wrong side: orbit at a safe radius towards the behind angle.
        orbit_r = contact + 0.04
        step = np.clip(dang, -0.8, 0.8)
        orbit = puck + orbit_r * np.stack([np.cos(ang_p + step), np.sin(ang_p + step)], axis=1)
        approach = np.where((np.abs(dang) > 0.35)[:, None], orbit, behind)
        # Aligned and close: push through the puck towards the target, correcting sideways drift.
        aligned = (np.abs(dang) < 0.3) & (dist < contact + 0.03)
        push = (puck - contact * 0.8 * u) - pusher + 0.5 * u
        goal = np.where(aligned[:, None], pusher + push, approach)
        a = self.gain * (goal - pusher)
        norm = np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1.0)
        return a / norm


class PlanarPushTask(Task):
    """The planar push task; constructor arguments are the ``tasks/planar_push.yaml`` keys."""

    def __init__(self, *, name: str, max_episode_steps: int, substeps: int,
                 max_speed: float, target_xy: Sequence[float], success_radius: float,
                 puck_init: Sequence[Sequence[float]],
                 pusher_init: Sequence[Sequence[float]],
                 control_hz: float, expert_noise: float, obs: str, cameras: Sequence[str] | None,
                 camera_size: int, camera_rotate_180: Sequence[str] | None, image: Mapping[str, Any] | None):
        if int(max_episode_steps) < 1 or int(substeps) < 1:
            raise TaskError("task.max_episode_steps and task.substeps must be at least 1; raise them.")
        self.name = str(name)
        self.env_kwargs = dict(max_episode_steps=int(max_episode_steps), substeps=int(substeps), max_speed=float(max_speed),
                               target_xy=tuple(float(x) for x in target_xy), success_radius=float(success_radius),
                               puck_init=[list(map(float, r)) for r in puck_init],
                               pusher_init=[list(map(float, r)) for r in pusher_init])
        self.control_hz = float(control_hz)
        self.expert_noise = float(expert_noise)
        self.image = dict(image or {"enabled": False})  # its settings: tasks/planar_push.yaml (image.*)
        self.obs_args = (str(obs), list(cameras or []), int(camera_size), list(camera_rotate_180 or []))
        self.layout(None)  # check the settings now

    @property
    def target_xy(self) -> tuple[float, float]:
        return self.env_kwargs["target_xy"]

    def layout(self, render: bool | None) -> _obs.ObsLayout:
        return _obs.obs_layout(*self.obs_args, image=self.image, render=render)

    def _spec(self, render: bool | None) -> EnvSpec:
        layout = self.layout(render)
        return EnvSpec(obs=_obs.obs_spec(layout, SEMANTICS_DIM, PROPRIO_DIM), action_dim=ACTION_DIM, action_low=(-1.0,) * ACTION_DIM, action_high=(1.0,) * ACTION_DIM,
                       max_episode_steps=self.env_kwargs["max_episode_steps"], control_hz=self.control_hz, name=self.name,
                       # velocity commands: holding still is a zero command
                       extra={"hold": "zero", "suite": "planar_push", "semantics_low": [-0.3] * SEMANTICS_DIM,
                              "semantics_high": [0.3] * SEMANTICS_DIM, "target_xy": list(self.target_xy), **_obs.spec_extra(layout)})

    @property
    def spec(self) -> EnvSpec:
        return self._spec(None)

    def make_env(self, render: bool | None = None) -> PlanarPushEnv:
        return PlanarPushEnv(**self.env_kwargs, image=None, layout=self.layout(render))

    def make_expert(self, rng: np.random.Generator) -> PlanarPushExpert:
        return PlanarPushExpert(self.target_xy, rng=rng, noise=self.expert_noise)
