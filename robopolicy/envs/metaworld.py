"""Meta-World v3 tasks: any of the 50 task names, dict observations, reproducible seeded resets.

Seeding (measured on metaworld 3.1.1): MT1 draws each reset from 50 pre-sampled
variations (object and goal positions) with the environment's own generator, and the generator
is *not* reseeded by ``reset(seed=...)``. :class:`MetaWorldEnv` therefore seeds the underlying
Sawyer environment itself (``env.seed(s)``) and then draws the variation from that generator, the
way metaworld's ``RandomTaskSelectWrapper`` does, so the same seed always gives the same episode.
With ``fresh_positions`` the variation list is not used: task sampling is off and every reset
draws a new random vector from the environment's reset space with the seeded generator.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any, Mapping

from robopolicy.envs import render as _render  # noqa: F401  (sets MUJOCO_GL before mujoco loads)

import gymnasium as gym
import numpy as np

from robopolicy.envs import observations as _obs
from robopolicy.envs.base import Expert, Task
from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import TaskError

STATE_DIM = 39
ACTION_DIM = 4
# Proprioception in the 39-d state: hand xyz (0:3) and the gripper opening (3); the rest is the
# objects (4:18), the same for the previous frame (18:36) and the goal (36:39).
PROPRIO_SLICE = slice(0, 4)
# metaworld's SawyerXYZEnv refuses to step past this many steps.
MW_MAX_PATH_LENGTH = 500
# Semantics (image-to-semantics work, robopolicy/semantics/): what the scripted experts read from
# the 39-d state: hand xyz, gripper opening, the first object's xyz, goal xyz (metres; opening 0..1).
SEMANTICS_NAMES = ("hand_x", "hand_y", "hand_z", "gripper", "obj_x", "obj_y", "obj_z", "goal_x", "goal_y", "goal_z")
SEMANTICS_DIM = len(SEMANTICS_NAMES)
# Hand settling when the simulator is set to semantics: rounds of physics steps through the mocap
# weld, and the residual (m) at which it stops.
_SETTLE_ROUNDS, _SETTLE_STEPS, _SETTLE_TOL_M = 4, 150, 5e-4
ARM_DOF = 7  # the Sawyer arm's joints come first in qpos / qvel (then the two fingers, the object, ...)


def semantics_from_state(state: np.ndarray) -> np.ndarray:
    """state (..., 39) -> semantics (..., 10) float32: hand xyz, gripper, object xyz, goal xyz."""
    state = np.asarray(state, dtype=np.float32)
    return np.concatenate([state[..., 0:7], state[..., 36:39]], axis=-1)


def state_from_semantics(s: np.ndarray, prev: np.ndarray | None = None, obj_quat=(0.0, 0.0, 0.0, 1.0)) -> np.ndarray:
    """semantics (10,) -> (39,) float32 state: object quaternion ``obj_quat``, no second object, and
    the previous frame built from ``prev`` (semantics of the step before; ``s`` itself at a reset).
    What a state-trained policy or a scripted expert reads when it runs on semantics."""
    s = np.asarray(s, dtype=np.float32)
    p = s if prev is None else np.asarray(prev, dtype=np.float32)
    out = np.zeros(STATE_DIM, np.float32)
    for off, x in ((0, s), (18, p)):
        out[off : off + 7] = x[:7]
        out[off + 7 : off + 11] = obj_quat
    out[36:39] = s[7:10]
    return out


def metaworld_env_names() -> list[str]:
    """The 50 Meta-World v3 task names, from metaworld's own registry."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return list(ALL_V3_ENVIRONMENTS)


def _check_env_name(env_name: str) -> str:
    names = metaworld_env_names()
    if env_name in names:
        return env_name
    close = difflib.get_close_matches(str(env_name), names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"see the {len(names)} names in metaworld.env_dict.ALL_V3_ENVIRONMENTS."
    raise TaskError(f"Unknown Meta-World task {env_name!r}; set task.env_name to a v3 name such as push-v3 ({hint})")


class MetaWorldEnv(_render.CameraEnvMixin, gym.Env):
    """Gymnasium environment around one Meta-World Sawyer task.

    Observations per ``layout`` (:mod:`robopolicy.envs.observations`): ``state`` (39,) float32
    (privileged), ``agent_pos`` (4,) = hand xyz + gripper opening, and one (H, W, 3) uint8 key per
    camera. :meth:`privileged_state` always gives the 39-d state (for the scripted experts). Actions: (4,) in [-1, 1] (xyz end-effector delta, gripper). ``info["success"]`` is
    a bool; ``info["variation"]`` is the index of the pre-sampled variation (-1 for fresh
    positions). Episodes are truncated after ``max_episode_steps``; they never terminate.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(
        self,
        env_name: str,
        variations: list | None,
        max_episode_steps: int,
        layout: _obs.ObsLayout | None = None,
    ):
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        self.env_name = env_name
        self.max_episode_steps = int(max_episode_steps)
        self._variations = variations
        self._mw = ALL_V3_ENVIRONMENTS[env_name]()
        # Goal position visible, as in MT1; drop the cached observation bounds computed for the
        # goal-hidden default, or step() would clip the goal to zero.
        self._mw._partially_observable = False
        self._mw.__dict__.pop("sawyer_observation_space", None)
        if variations:
            self._mw.set_task(variations[0])
        else:
            # Fresh positions: no task list, positions drawn from the reset space with the seeded
            # generator (seeded_rand_vec) rather than numpy's global one.
            self._mw._set_task_called = True
            self._mw._freeze_rand_vec = False
            self._mw.seeded_rand_vec = True
            self._mw._last_rand_vec = None
        self.layout = layout or _obs.ObsLayout(state=True, proprio=False, cameras=())
        self._rig = _obs.CameraRig(self._mw.model, self.layout)
        self._state = np.zeros(STATE_DIM, np.float32)
        self.observation_space = _obs.gym_spaces(self.layout, STATE_DIM, PROPRIO_SLICE.stop - PROPRIO_SLICE.start)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.render_mode = "rgb_array" if self._rig else None
        self._t = 0
        self._variation = -1

    @property
    def sawyer(self):
        """The underlying metaworld ``SawyerXYZEnv`` (scripted experts and tests read it)."""
        return self._mw

    def privileged_state(self) -> np.ndarray:
        """(39,) float32 full state of the last reset/step, whatever the observation layout."""
        return self._state.copy()

    def _obs(self, state: np.ndarray) -> dict[str, np.ndarray]:
        self._state = np.asarray(state, dtype=np.float32)
        return _obs.assemble(self.layout, self._state, self._state[PROPRIO_SLICE], self._rig, self._mw.data)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._mw.seed(int(seed))
        if self._variations:
            self._variation = int(self._mw.np_random.choice(len(self._variations)))
            self._mw.set_task(self._variations[self._variation])
        else:
            self._variation = -1
        state, _ = self._mw.reset()
        self._t = 0
        return self._obs(state), {"success": False, "variation": self._variation}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(ACTION_DIM), -1.0, 1.0)
        state, reward, _, _, mw_info = self._mw.step(action)
        self._t += 1
        info = {k: v for k, v in mw_info.items() if k != "success"}
        info["success"] = bool(mw_info.get("success", False))
        info["variation"] = self._variation
        truncated = self._t >= self.max_episode_steps
        return self._obs(state), float(reward), False, truncated, info

    def _render_data(self):
        return self._mw.data

    # -- semantics (robopolicy/semantics/): read and set hand, gripper, object and goal ---------
    def get_semantics(self) -> np.ndarray:
        """(10,) float32 semantics of the live simulator state (see :data:`SEMANTICS_NAMES`)."""
        mw = self._mw
        return np.concatenate([mw._get_curr_obs_combined_no_goal()[:7], mw._get_pos_goal()]).astype(np.float32)

    def set_semantics(self, s: np.ndarray) -> None:
        """Set the simulator to semantics ``s`` (10,), for pair augmentation.

        Semantics the simulator already has (to 1e-6) leave it untouched, so replaying actions
        keeps its hidden state (arm joints, velocities). Otherwise: the goal is moved, the object
        placed at rest (its orientation kept), the fingers set to the opening (bisection on the
        finger joints), and the hand driven to its position through the mocap weld with the
        object and fingers held and contacts off (the arm's joint angles are not part of the semantics, so they
        are whatever the weld settles to; velocities end at zero).
        """
        s = np.asarray(s, dtype=np.float64).reshape(SEMANTICS_DIM)
        mw, m, d = self._mw, self._mw.model, self._mw.data
        mw.curr_path_length = 0  # metaworld refuses to step past its path length otherwise
        if np.max(np.abs(self.get_semantics() - s)) < 1e-6:
            return
        import mujoco

        mw._target_pos = s[7:10].copy()
        mw.model.site("goal").pos = s[7:10]
        fingers = self._finger_qpos(float(np.clip(s[3], 0.0, 1.0)))
        mocap = m.body_mocapid[d.body("mocap").id]

        def hold():
            d.qpos[7:9] = fingers
            d.qpos[9:12] = s[4:7]
            d.qvel[7:15] = 0.0

        # Contacts off while the hand travels, or the object it is to touch would block it.
        flags = m.opt.disableflags
        m.opt.disableflags = flags | int(mujoco.mjtDisableBit.mjDSBL_CONTACT)
        # The weld pulls the hand onto the mocap body; after each settling round the mocap target
        # is corrected by the remaining error (the arm's sag under gravity).
        d.mocap_pos[mocap] = np.clip(s[0:3], mw.mocap_low, mw.mocap_high)
        d.mocap_quat[mocap] = np.array([1.0, 0.0, 1.0, 0.0])
        for _ in range(_SETTLE_ROUNDS):
            for _ in range(_SETTLE_STEPS):
                mujoco.mj_step(m, d)
                hold()
            mujoco.mj_forward(m, d)
            err = s[0:3] - mw.get_endeff_pos()
            if np.linalg.norm(err) < _SETTLE_TOL_M:
                break
            d.mocap_pos[mocap] = np.clip(d.mocap_pos[mocap] + err, mw.mocap_low, mw.mocap_high)
        m.opt.disableflags = flags
        d.qvel[:] = 0.0
        hold()
        mujoco.mj_forward(m, d)
        mw._prev_obs = mw._get_curr_obs_combined_no_goal()
        self._state = np.asarray(np.hstack([mw._prev_obs, mw._prev_obs, mw._get_pos_goal()]), np.float32)

    def set_robot_motion(self, actions: np.ndarray, previous_hand: np.ndarray) -> None:
        """After :meth:`set_semantics` at frame t of a recorded episode, the robot's hidden state there.

        ``actions`` (t, 4): every action since the episode's reset; the mocap target is where they put it (the reset
        places it at the task's initial hand position and each step adds ``action x action_scale``, clipped to the
        mocap box). ``previous_hand`` (3,): the hand at frame t - 1 (the robot's reading); the arm's joints move
        the hand at the recorded speed (least squares through the hand's Jacobian, not turning). Without this a replay starts
        from rest with the target on the hand, and on Meta-World push its hand is 2 cm off the record after 5 steps.
        """
        import mujoco

        mw, m, d = self._mw, self._mw.model, self._mw.data
        target = np.asarray(mw.hand_init_pos, np.float64).copy()
        for a in np.asarray(actions, np.float64).reshape(-1, ACTION_DIM):
            target = np.clip(target + np.clip(a[:3], -1.0, 1.0) * mw.action_scale, mw.mocap_low, mw.mocap_high)
        d.mocap_pos[m.body_mocapid[d.body("mocap").id]] = target
        velocity = (mw.get_endeff_pos() - np.asarray(previous_hand, np.float64)) / (m.opt.timestep * mw.frame_skip)
        # The weld also holds the hand's orientation, so it translates without turning: (linear, angular) = (v, 0).
        jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        mujoco.mj_jacBody(m, d, jacp, jacr, d.body("hand").id)
        jac = np.vstack([jacp, jacr])[:, :ARM_DOF]
        d.qvel[:ARM_DOF] = np.linalg.lstsq(jac, np.r_[velocity, 0.0, 0.0, 0.0], rcond=None)[0]
        mujoco.mj_forward(m, d)

    def steer_hand(self, target: np.ndarray) -> None:
        """Shift the mocap target by the hand's offset from ``target`` (3,), so the next steps pull the hand back onto
        a recorded path (the arm's joint configuration is not in the semantics, so a replay drifts from it)."""
        mw, d = self._mw, self._mw.data
        mocap = mw.model.body_mocapid[d.body("mocap").id]
        d.mocap_pos[mocap] = np.clip(d.mocap_pos[mocap] + np.asarray(target, np.float64) - mw.get_endeff_pos(),
                                     mw.mocap_low, mw.mocap_high)

    def _finger_qpos(self, opening: float) -> np.ndarray:
        """Finger joint positions (r_close, l_close) whose opening (0..1, as in the state) is ``opening``."""
        import mujoco

        m, d = self._mw.model, self._mw.data
        lo, hi = m.jnt_range[m.joint("r_close").id]
        saved = d.qpos[7:9].copy()

        def opening_at(q):
            d.qpos[7:9] = (q, -q)
            mujoco.mj_kinematics(m, d)
            return float(np.clip(np.linalg.norm(d.body("rightclaw").xpos - d.body("leftclaw").xpos) / 0.1, 0.0, 1.0))

        a, b = float(lo), float(hi)
        increasing = opening_at(b) > opening_at(a)
        for _ in range(30):
            mid = 0.5 * (a + b)
            if (opening_at(mid) < opening) == increasing:
                a = mid
            else:
                b = mid
        d.qpos[7:9] = saved
        q = 0.5 * (a + b)
        return np.array([q, -q])

    def close(self):
        super().close()  # the camera
        self._mw.close()


class MetaWorldExpert(Expert):
    """metaworld's scripted policy for the task (``metaworld.policies.ENV_POLICY_MAP``).

    The scripted policies are deterministic functions of the 39-d state, read from ``obs["state"]``
    or, when the observations hide it (``task.obs=visuomotor``), from the environment; ``rng`` is
    unused.
    """

    def __init__(self, env_name: str):
        from metaworld.policies import ENV_POLICY_MAP

        self.name = ENV_POLICY_MAP[env_name].__name__
        self._policy = ENV_POLICY_MAP[env_name]()

    def act(self, obs: Mapping[str, np.ndarray], env: gym.Env) -> np.ndarray:
        with warnings.catch_warnings():  # its P-gains trip a "constants may be too high" warning
            warnings.simplefilter("ignore", UserWarning)
            state = obs["state"] if "state" in obs else env.unwrapped.privileged_state()
            action = self._policy.get_action(np.asarray(state, dtype=np.float64))
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)


class MetaWorldTask(Task):
    """A Meta-World v3 task (``tasks/metaworld.yaml``).

    env_name: any of the 50 v3 names. variation_seed: seed of metaworld's MT1 benchmark that
    pre-samples the 50 standard variations. fresh_positions: ignore those and draw new positions
    at every reset. obs / cameras / camera_size / camera_rotate_180: the observation keys
    (:func:`robopolicy.envs.observations.obs_layout`). image: the legacy ``{enabled, size, camera,
    rotate_180}`` block (one camera under the key ``image``).
    """

    def __init__(
        self,
        *,
        env_name: str,
        name: str,
        max_episode_steps: int,
        fresh_positions: bool,
        variation_seed: int,
        control_hz: float,
        obs: str,
        cameras: list[str] | None,
        camera_size: int,
        camera_rotate_180: list[str] | None,
        image: Mapping[str, Any] | None,
    ):
        self.env_name = _check_env_name(env_name)
        if not 1 <= int(max_episode_steps) <= MW_MAX_PATH_LENGTH:
            raise TaskError(
                f"task.max_episode_steps={max_episode_steps} is outside 1..{MW_MAX_PATH_LENGTH}; "
                f"Meta-World stops every episode at {MW_MAX_PATH_LENGTH} steps, so pick a value in that range."
            )
        self.name = str(name)
        self.max_episode_steps = int(max_episode_steps)
        self.fresh_positions = bool(fresh_positions)
        self.variation_seed = int(variation_seed)
        self.control_hz = float(control_hz)
        self.image = dict(image or {"enabled": False})  # its settings: tasks/metaworld.yaml (image.*)
        self.obs_args = (str(obs), list(cameras or []), int(camera_size), list(camera_rotate_180 or []))
        self.layout(None)  # check the settings now, not at the first make_env
        self._variations: list | None = None

    def variations(self) -> list:
        """The 50 standard variations (metaworld ``Task`` records), made once per task object."""
        if self._variations is None:
            import metaworld

            self._variations = list(metaworld.MT1(self.env_name, seed=self.variation_seed).train_tasks)
        return self._variations

    def layout(self, render: bool | None) -> _obs.ObsLayout:
        return _obs.obs_layout(*self.obs_args, image=self.image, render=render)

    def _spec(self, render: bool | None) -> EnvSpec:
        layout = self.layout(render)
        return EnvSpec(
            obs=_obs.obs_spec(layout, STATE_DIM, PROPRIO_SLICE.stop - PROPRIO_SLICE.start),
            action_dim=ACTION_DIM,
            action_low=(-1.0,) * ACTION_DIM,
            action_high=(1.0,) * ACTION_DIM,
            max_episode_steps=self.max_episode_steps,
            control_hz=self.control_hz,
            name=self.env_name,
            extra={"hold": ["zero", "zero", "zero", "last"],  # xyz deltas stop, the gripper keeps its command
                   "suite": "metaworld", "fresh_positions": self.fresh_positions, "variation_seed": self.variation_seed,
                   **_obs.spec_extra(layout)},
        )

    @property
    def spec(self) -> EnvSpec:
        return self._spec(None)

    def make_env(self, render: bool | None = None) -> MetaWorldEnv:
        return MetaWorldEnv(
            self.env_name,
            None if self.fresh_positions else self.variations(),
            self.max_episode_steps,
            layout=self.layout(render),
        )

    def make_expert(self, rng: np.random.Generator) -> MetaWorldExpert:
        return MetaWorldExpert(self.env_name)
