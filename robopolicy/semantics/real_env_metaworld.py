"""The "real" Meta-World environment: the same Sawyer scene seen through a camera with a visual and dynamics gap.

The gap is a set of MuJoCo model edits on the task's own scene: geom and material colours
(``geom_rgba``, ``mat_rgba``), light strength and direction (``light_diffuse``, ``light_dir``), a
fixed camera shift plus a per-episode jitter (``cam_pos``), optionally the camera re-aimed at a point of
the workspace (``camera_lookat``, ``cam_quat``: a camera mounted where it sees the objects), Gaussian pixel noise, and the main
object's mass and sliding friction (``body_mass``, ``geom_friction``). Observations hold the
``image`` and the robot's own reading ``agent_pos`` (hand xyz + gripper opening, exact, as its
encoders give it; what ``semantics.proprio_semantics`` takes instead of the mapper's estimate). The
true semantics (hand, gripper, object, goal: :data:`SEMANTICS_NAMES`) are read by the annotation
oracle and the evaluation through :meth:`true_semantics`.
With ``mass_scale = friction_scale = 1`` the dynamics are the simulator's (the look does not touch
the physics).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import mujoco
import numpy as np

from robopolicy.envs import observations as _obs
from robopolicy.envs.metaworld import MetaWorldEnv, MetaWorldTask, semantics_from_state
from robopolicy.errors import ConfigError
from robopolicy.semantics.dynamics import ObjectDynamics


def _id(model, kind, name: str, what: str) -> int:
    i = mujoco.mj_name2id(model, kind, name)
    if i < 0:
        raise ConfigError(f"The Meta-World scene has no {what} named {name!r}; fix semantics.real_env.")
    return i


def look_at_quat(pos: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """(4,) MuJoCo quaternion of a camera at ``pos`` looking at ``target`` with the world's z up in the picture.

    A MuJoCo camera looks along its local -z with local +y up; the frame's columns are those axes in
    world coordinates, and ``mujoco.mju_mat2Quat`` turns the frame into the quaternion.
    """
    back = np.asarray(pos, np.float64) - np.asarray(target, np.float64)
    if np.linalg.norm(back) < 1e-6:
        raise ConfigError("real_env.camera_lookat is the camera's own position; aim it at a point of the workspace.")
    z = back / np.linalg.norm(back)
    x = np.cross([0.0, 0.0, 1.0], z)
    if np.linalg.norm(x) < 1e-6:  # looking straight down or up: keep the world's y up in the picture
        x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    frame = np.column_stack([x, np.cross(z, x), z])
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, frame.reshape(-1))
    return quat


def object_dynamics(model, body: str, geom: str) -> ObjectDynamics:
    """The mass of ``body`` and the sliding friction of ``geom`` (the task's object) in a Meta-World model."""
    return ObjectDynamics(model, _id(model, mujoco.mjtObj.mjOBJ_BODY, body, "body"),
                          [("geom_friction", (_id(model, mujoco.mjtObj.mjOBJ_GEOM, geom, "geom"), 0))])


class RealMetaWorldEnv(MetaWorldEnv):
    """One Meta-World task with the reality gap; observations ``{"image": (H, W, 3) uint8, "agent_pos": (4,) float32}``."""

    def __init__(self, task: MetaWorldTask, *, image_size: int, camera: str, rotate_180: bool,
                 geom_rgba: Mapping[str, Sequence[float]] | None, material_rgba: Mapping[str, Sequence[float]] | None,
                 light_diffuse_scale: float, light_dir: Sequence[float] | None, camera_shift_m: Sequence[float],
                 camera_jitter_m: float, camera_lookat: Sequence[float] | None, pixel_noise_std: float, object_body: str,
                 object_geom: str, mass_scale: float,
                 friction_scale: float):
        # No defaults: the gap is conf/semantics/real_env/metaworld.yaml's.
        # mass_scale and friction_scale are checked where they are applied (ObjectDynamics.scale).
        if pixel_noise_std < 0 or camera_jitter_m < 0 or light_diffuse_scale < 0:
            raise ConfigError("real_env.pixel_noise_std, camera_jitter_m and light_diffuse_scale must be >= 0; fix semantics.real_env.")
        layout = _obs.ObsLayout(state=False, proprio=True, cameras=(("image", str(camera), int(image_size), bool(rotate_180)),))
        super().__init__(task.env_name, None if task.fresh_positions else task.variations(), task.max_episode_steps, layout=layout)
        m = self.sawyer.model
        for name, rgba in (geom_rgba or {}).items():
            m.geom_rgba[_id(m, mujoco.mjtObj.mjOBJ_GEOM, name, "geom")] = rgba
        for name, rgba in (material_rgba or {}).items():
            m.mat_rgba[_id(m, mujoco.mjtObj.mjOBJ_MATERIAL, name, "material")] = rgba
        m.light_diffuse[:] *= float(light_diffuse_scale)
        if light_dir is not None:
            m.light_dir[:] = np.asarray(light_dir, np.float64) / np.linalg.norm(light_dir)
        object_dynamics(m, object_body, object_geom).scale(mass_scale, friction_scale)
        self._cam = _id(m, mujoco.mjtObj.mjOBJ_CAMERA, str(camera), "camera")
        self._cam_pos0 = m.cam_pos[self._cam] + np.asarray(camera_shift_m, np.float64)
        if camera_lookat is not None:
            if m.cam_bodyid[self._cam] != 0:
                raise ConfigError(f"real_env.camera_lookat needs a camera fixed in the world; {camera!r} moves with a body. "
                                  "Pick a world camera (corner, corner2, corner3, topview) or set camera_lookat: null.")
            m.cam_quat[self._cam] = look_at_quat(self._cam_pos0, camera_lookat)
        self.camera_jitter_m, self.pixel_noise_std = float(camera_jitter_m), float(pixel_noise_std)
        # The look (camera jitter, pixel noise) has its own generator, so a seed gives the same
        # initial state as in the simulator.
        self._look_rng = np.random.default_rng(0)

    def true_semantics(self) -> np.ndarray:
        """(10,) float32 true semantics. For the annotation oracle and the evaluation only, never the learner."""
        return semantics_from_state(self.privileged_state())

    def _obs(self, state: np.ndarray) -> dict[str, np.ndarray]:
        obs = super()._obs(state)
        if self.pixel_noise_std > 0:
            noise = self._look_rng.normal(0.0, self.pixel_noise_std, size=obs["image"].shape)
            obs["image"] = np.clip(obs["image"].astype(np.float32) + noise, 0, 255).astype(np.uint8)
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._look_rng = np.random.default_rng([int(seed), 7])
        self.sawyer.model.cam_pos[self._cam] = self._cam_pos0 + self._look_rng.uniform(-1, 1, 3) * self.camera_jitter_m
        return super().reset(seed=seed, options=options)
