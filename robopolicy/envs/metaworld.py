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
