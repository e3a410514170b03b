"""The "real" environment: the planar push task seen through a camera with a visual and dynamics gap.

It is the simulator's scene compiled with another look (colours, a checker-textured table, other
lighting), a camera whose pose is jittered at every reset, Gaussian pixel noise, and optionally
other puck mass and table friction. Its observations hold the ``image`` and the robot's own reading
``agent_pos`` (the pusher xy, exact, as a robot's encoders give it; what ``semantics.proprio_semantics``
takes instead of the mapper's estimate). The puck is hidden from the learner: the true semantics are
read only by the annotation oracle and the evaluation through :meth:`RealPlanarPushEnv.true_semantics`.

With ``mass_scale = friction_scale = 1`` the dynamics are the simulator's exactly (the look does not
touch the physics), which the pair-augmentation test relies on.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import gymnasium as gym
import mujoco
import numpy as np

from robopolicy.envs.observations import PROPRIO_KEY
from robopolicy.envs.planar_push import ASSET, PROPRIO_DIM, PlanarPushEnv
from robopolicy.errors import ConfigError
from robopolicy.semantics.dynamics import ObjectDynamics


def _real_model(colors: Mapping[str, Sequence[float]], table_texture: bool, light_dir: Sequence[float],
                light_diffuse: float) -> mujoco.MjModel:
    spec = mujoco.MjSpec.from_file(str(ASSET))
    for name, rgba in colors.items():
        spec.material(name).rgba = list(rgba)
    if table_texture:
        spec.add_texture(name="checker", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
                         width=64, height=64, rgb1=[0.55, 0.5, 0.42], rgb2=[0.68, 0.62, 0.52])
        mat = spec.material("table")
        tex = list(mat.textures)
        tex[int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = "checker"
        mat.textures = tex
        mat.texrepeat = [5, 5]
        mat.rgba = [1, 1, 1, 1]
    light = spec.light("sun")
    light.dir = np.asarray(light_dir, dtype=np.float64) / np.linalg.norm(light_dir)
    light.diffuse = [light_diffuse] * 3
    return spec.compile()


def puck_dynamics(model) -> ObjectDynamics:
    """The puck's mass and the friction loss of its two sliding joints, in a planar-push model."""
    puck = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "puck")
    dofs = [int(model.jnt_dofadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j)]) for j in ("puck_x", "puck_y")]
    return ObjectDynamics(model, puck, [("dof_frictionloss", d) for d in dofs])


class RealPlanarPushEnv(PlanarPushEnv):
    """Planar push with the reality gap; observations ``{"image": (H, W, 3) uint8, "agent_pos": (2,) float32}``."""

    def __init__(self, task_kwargs: Mapping[str, Any], *, image_size: int, colors: Mapping[str, Sequence[float]] | None,
                 table_texture: bool, light_dir: Sequence[float], light_diffuse: float, camera_jitter_m: float,
                 camera_yaw_jitter_rad: float, pixel_noise_std: float, mass_scale: float, friction_scale: float):
        # No defaults: the gap is conf/semantics/real_env/<task>.yaml's.
        # mass_scale and friction_scale are checked where they are applied (ObjectDynamics.scale).
        if pixel_noise_std < 0 or camera_jitter_m < 0:
            raise ConfigError("real_env.pixel_noise_std and camera_jitter_m must be >= 0; fix semantics.real_env.")
        model = _real_model(dict(colors or {}), table_texture, light_dir, light_diffuse)
        super().__init__(**task_kwargs, image={"size": int(image_size), "camera": "top"}, layout=None, model=model)
        puck_dynamics(self.model).scale(mass_scale, friction_scale)
        self._cam = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, "top")
        self._cam_pos0 = self.model.cam_pos[self._cam].copy()
        self._cam_quat0 = self.model.cam_quat[self._cam].copy()
        self.camera_jitter_m = float(camera_jitter_m)
        self.camera_yaw_jitter_rad = float(camera_yaw_jitter_rad)
        self.pixel_noise_std = float(pixel_noise_std)
        # The look (camera jitter, pixel noise) has its own generator, so a seed gives the same
        # initial state as in the simulator.
        self._look_rng = np.random.default_rng(0)
        self.observation_space = gym.spaces.Dict({"image": self.observation_space["image"],
                                                  PROPRIO_KEY: gym.spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32)})

    def true_semantics(self) -> np.ndarray:
        """(4,) float32 true state. For the annotation oracle and the evaluation only, never the learner."""
        return self.get_semantics()

    def _obs(self) -> dict[str, np.ndarray]:
        img = self.render()
        if self.pixel_noise_std > 0:
            noise = self._look_rng.normal(0.0, self.pixel_noise_std, size=img.shape)
            img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        return {"image": img, PROPRIO_KEY: self.get_semantics()[:PROPRIO_DIM].copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._look_rng = np.random.default_rng([int(seed), 7])
        # Camera pose jitter for this episode: a small shift and a small turn about the view axis.
        self.model.cam_pos[self._cam] = self._cam_pos0 + self._look_rng.uniform(-1, 1, 3) * self.camera_jitter_m
        yaw = self._look_rng.uniform(-1, 1) * self.camera_yaw_jitter_rad
        q = np.zeros(4)
        mujoco.mju_mulQuat(q, np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]), self._cam_quat0)
        self.model.cam_quat[self._cam] = q
        return super().reset(seed=seed, options=options)


def make_real_env(task: Any, **gap: Any):
    """The real environment of ``task`` (planar push, Meta-World, or their SemanticsTask) with the gap
    settings ``gap`` (the ``semantics.real_env`` config)."""
    from robopolicy.semantics.tasks import semantics_task

    return semantics_task(task).make_real_env(**gap)
