"""Tasks whose semantics set the simulator: what the image-to-semantics stack needs from a task.

A :class:`SemanticsTask` gives the semantics vector's names, bounds and error groups, a simulator
whose state can be set from semantics (``env.unwrapped.set_semantics(s)`` / ``get_semantics()``,
for pair augmentation), the "real" environment with a visual and dynamics gap (observations: the
camera ``image`` and the robot's own reading ``agent_pos``, the coordinates ``proprio_names``;
``true_semantics()`` for the oracle and the evaluation), the behaviour policy
of the offline data, and the scripted expert as a controller on semantics. Implemented by planar
push (:class:`PlanarPushSemantics`) and Meta-World (:class:`MetaWorldSemantics`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from robopolicy.envs.base import Task
from robopolicy.errors import TaskError
from robopolicy.evaluation.episodes import episode_generators


class SemanticsTask:
    """Base of the task adapters; see the module docstring.

    ``groups``: name -> (slice of the semantics vector, in metres?) for the per-group errors.
    ``proprio_names``: the coordinates the real robot measures itself, in the order of its ``agent_pos``
    observation (``semantics.proprio_semantics`` may take them from there: robopolicy/semantics/proprio.py).
    ``effector_names``: the position coordinates the robot moves directly (hand or pusher), for
    :meth:`reach_action`.
    """

    task: Task
    names: tuple[str, ...]
    proprio_names: tuple[str, ...]
    effector_names: tuple[str, ...]
    groups: dict[str, tuple[slice, bool]]

    @property
    def name(self) -> str:
        return str(self.task.name)

    @property
    def dim(self) -> int:
        return len(self.names)

    def bounds(self) -> tuple[list[float], list[float]]:
        raise NotImplementedError

    def make_sim(self):
        raise NotImplementedError

    def make_real_env(self, **gap: Any):
        raise NotImplementedError

    #: ``follow_reading(sim_env, readings, actions, t, k)``, or None where the semantics are the simulator's whole
    #: state: called before step k of a pair-augmentation replay from frame t of an offline episode (its robot
    #: readings (T, P) and actions (T, A)), it gives the simulated robot the hidden state the recording implies.
    follow_reading = None

    def object_dynamics(self, env, real_env: Mapping[str, Any]):
        """The :class:`~robopolicy.semantics.dynamics.ObjectDynamics` of the object the real scene's gap changes
        (``real_env``: its config), in ``env`` (the simulator): what pair augmentation's dynamics gate varies."""
        raise NotImplementedError

    def expert_action(self, s: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
        """The scripted expert's noise-free action on semantics ``s`` (D,) (``prev``: the step before)."""
        raise NotImplementedError

    def policy_state(self, s: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
        """The ``state`` observation a state-trained policy reads, built from semantics."""
        raise NotImplementedError

    def reach_action(self, s: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The action that moves the effector (``effector_names``) from its position in ``s`` towards ``target``."""
        raise NotImplementedError

    def effector_box(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the effector's position: the task's bounds of ``effector_names``."""
        low, high = self.bounds()
        idx = [self.names.index(n) for n in self.effector_names]
        return np.asarray(low)[idx], np.asarray(high)[idx]

    def behaviour_actor(self, noise: float, reach_steps: int):
        """Actor (:mod:`robopolicy.evaluation.episodes`) of the offline data: the noisy expert on the true state,
        after ``reach_steps`` steps of reaching to a random point (``semantics.data.reach_steps``; 0: none)."""
        return _reach_first(self, _NoisyExpertActor(self, float(noise)), reach_steps)

    def group_errors(self, pred: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
        """pred, true (N, D) -> per group (N,) errors: Euclidean for position groups (m), absolute otherwise."""
        return {g: (np.linalg.norm(pred[:, sl] - true[:, sl], axis=1) if metres else np.abs(pred[:, sl] - true[:, sl]).mean(1))
                for g, (sl, metres) in self.groups.items()}


class _NoisyExpertActor:
    """The expert acting on the hidden true semantics plus Gaussian action noise (std ``noise``), clipped to [-1, 1]."""

    def __init__(self, task: SemanticsTask, noise: float):
        self.task, self.noise, self.rng, self.prev = task, noise, None, None

    def reset(self, seed: int) -> None:
        (self.rng,) = episode_generators(seed, 1)
        self.prev = None

    def act(self, obs, env, t: int) -> np.ndarray:
        s = env.true_semantics()
        a = self.task.expert_action(s, self.prev)
        self.prev = s
        if self.noise > 0:
            a = a + self.rng.normal(0.0, self.noise, size=a.shape)
        return np.clip(a, -1.0, 1.0).astype(np.float32)


class _ReachFirst:
    """The first ``steps`` steps of each episode the effector reaches to a point drawn uniformly in its box (one per
    episode, from the episode seed's second generator: the behaviour's own draws are unchanged), then ``then`` acts.
    Such data shows the robot away from the objects, as "play" recordings do; the expert alone mostly shows it at them."""

    def __init__(self, task: SemanticsTask, then: Any, steps: int):
        self.task, self.then, self.steps = task, then, int(steps)
        self.low, self.high = task.effector_box()
        self.target = None

    def reset(self, seed: int) -> None:
        self.then.reset(seed)
        self.target = episode_generators(seed, 2)[1].uniform(self.low, self.high)

    def act(self, obs, env, t: int) -> np.ndarray:
        if t < self.steps:
            return np.clip(self.task.reach_action(env.true_semantics(), self.target), -1.0, 1.0).astype(np.float32)
        return self.then.act(obs, env, t)


def _reach_first(task: SemanticsTask, actor: Any, steps: int) -> Any:
    if int(steps) < 0:
        raise TaskError(f"data.reach_steps={steps} must be 0 (no reaching phase) or a positive number of steps.")
    return _ReachFirst(task, actor, steps) if int(steps) > 0 else actor


class PlanarPushSemantics(SemanticsTask):
    """Planar push: semantics = pusher xy, puck xy (the whole simulator state)."""

    names = ("pusher_x", "pusher_y", "puck_x", "puck_y")
    proprio_names = names[:2]  # the pusher xy: the env's agent_pos (robopolicy.envs.planar_push.PROPRIO_DIM)
    effector_names = names[:2]
    groups = {"pusher": (slice(0, 2), True), "puck": (slice(2, 4), True)}

    def __init__(self, task):
        from robopolicy.envs.planar_push import PlanarPushExpert

        self.task = task
        self._expert = PlanarPushExpert(task.target_xy)

    def bounds(self):
        e = self.task.spec.extra
        return list(e["semantics_low"]), list(e["semantics_high"])

    def make_sim(self):
        return self.task.make_env(render=False)

    def make_real_env(self, **gap):
        from robopolicy.semantics.real_env import RealPlanarPushEnv

        return RealPlanarPushEnv(self.task.env_kwargs, **gap)

    def object_dynamics(self, env, real_env):
        from robopolicy.semantics.real_env import puck_dynamics

        return puck_dynamics(env.unwrapped.model)

    def expert_action(self, s, prev):
        return self._expert.act_state(np.asarray(s, dtype=np.float64)[None])[0].astype(np.float32)

    def policy_state(self, s, prev):
        return np.asarray(s, np.float32)

    def reach_action(self, s, target):
        """The expert's own proportional step (its gain, unit-norm clipped) towards ``target`` instead of its goal."""
        a = self._expert.gain * (np.asarray(target, np.float64) - np.asarray(s, np.float64)[:2])
        return (a / max(float(np.linalg.norm(a)), 1.0)).astype(np.float32)

    def behaviour_actor(self, noise: float, reach_steps: int):
        return _reach_first(self, _PlanarBehaviour(self.task, noise), reach_steps)


class _PlanarBehaviour:
    """Planar push's behaviour policy: its scripted expert with its own noise model (as recorded before)."""

    def __init__(self, task, noise: float):
        self.target_xy, self.noise, self.expert = task.target_xy, float(noise), None

    def reset(self, seed: int) -> None:
        from robopolicy.envs.planar_push import PlanarPushExpert

        (rng,) = episode_generators(seed, 1)
        self.expert = PlanarPushExpert(self.target_xy, rng=rng, noise=self.noise)

    def act(self, obs, env, t: int) -> np.ndarray:
        return self.expert.act({"state": env.true_semantics()})


class MetaWorldSemantics(SemanticsTask):
    """A Meta-World task: semantics = hand xyz, gripper opening, object xyz, goal xyz (metaworld.SEMANTICS_NAMES).

    The expert is metaworld's scripted policy on the 39-d state rebuilt from semantics
    (:func:`robopolicy.envs.metaworld.state_from_semantics`: the object's orientation is the
    reset one, the previous frame is the previous step's semantics).
    """

    groups = {"hand": (slice(0, 3), True), "gripper": (slice(3, 4), False), "object": (slice(4, 7), True),
              "goal": (slice(7, 10), True)}

    def __init__(self, task):
        from robopolicy.envs.metaworld import PROPRIO_SLICE, SEMANTICS_NAMES, MetaWorldExpert

        self.task, self.names = task, SEMANTICS_NAMES
        self.proprio_names = SEMANTICS_NAMES[PROPRIO_SLICE]  # hand xyz + gripper opening: the env's agent_pos
        self.effector_names = SEMANTICS_NAMES[:3]  # the hand
        self._expert = MetaWorldExpert(task.env_name)

    def bounds(self):
        """From the task's own spaces: the mocap box (hand), 0..1 (gripper), the object and goal
        reset boxes joined (object: it travels to the goal), each padded by 5 cm (2 cm for the goal)."""
        sim = self.task.make_env(render=False)
        try:
            mw = sim.sawyer
            obj_lo, obj_hi = np.asarray(mw._random_reset_space.low[:3]), np.asarray(mw._random_reset_space.high[:3])
            goal_lo, goal_hi = np.asarray(mw.goal_space.low), np.asarray(mw.goal_space.high)
            low = np.concatenate([mw.mocap_low, [0.0], np.minimum(obj_lo, goal_lo) - 0.05, goal_lo - 0.02])
            high = np.concatenate([mw.mocap_high, [1.0], np.maximum(obj_hi, goal_hi) + 0.05, goal_hi + 0.02])
        finally:
            sim.close()
        return [float(x) for x in low], [float(x) for x in high]

    def make_sim(self):
        return self.task.make_env(render=False)

    def make_real_env(self, **gap):
        from robopolicy.semantics.real_env_metaworld import RealMetaWorldEnv

        return RealMetaWorldEnv(self.task, **gap)

    def follow_reading(self, env, readings, actions, t, k):
        """Meta-World's hand is pulled by a mocap target and the arm's joints are not in the semantics: at the start,
        the target where the episode's actions put it and the hand at its recorded speed; at every step, the target
        shifted by the hand's offset from its recorded position (the reading is the robot's own, hand xyz first)."""
        sim = env.unwrapped
        if k == 0:
            sim.set_robot_motion(actions[:t], readings[max(t - 1, 0), :3])
        sim.steer_hand(readings[t + k, :3])

    def object_dynamics(self, env, real_env):
        from robopolicy.semantics.real_env_metaworld import object_dynamics

        return object_dynamics(env.unwrapped.sawyer.model, str(real_env["object_body"]), str(real_env["object_geom"]))

    def policy_state(self, s, prev):
        from robopolicy.envs.metaworld import state_from_semantics

        return state_from_semantics(s, prev)

    def expert_action(self, s, prev):
        return self._expert.act({"state": self.policy_state(s, prev)}, None)

    def reach_action(self, s, target):
        """metaworld's scripted policies' move rule (10 x the xyz offset, clipped by the caller), gripper open (-1)."""
        return np.r_[REACH_GAIN * (np.asarray(target) - np.asarray(s)[:3]), -1.0].astype(np.float32)


REACH_GAIN = 10.0  # metaworld.policies' move(..., p=10): action = p * (target - hand)


def semantics_task(task: Any) -> SemanticsTask:
    """The adapter of ``task`` (a :class:`SemanticsTask` passes through); TaskError for a task without one."""
    from robopolicy.envs.metaworld import MetaWorldTask
    from robopolicy.envs.planar_push import PlanarPushTask

    if isinstance(task, SemanticsTask):
        return task
    if isinstance(task, PlanarPushTask):
        return PlanarPushSemantics(task)
    if isinstance(task, MetaWorldTask):
        return MetaWorldSemantics(task)
    raise TaskError(f"robopolicy-semantics needs a task whose semantics set the simulator; use task=planar_push or "
                    f"task=metaworld, not {getattr(task, 'name', task)!r}.")
