"""Transfer evaluation: a simulator-trained controller runs in the "real" environment on f(image).

Per episode: the mapper turns the last ``n_frames`` camera frames into semantics, the controller
acts on them. Coordinates listed in ``semantics.proprio_semantics`` come from the robot's own reading
(the real environment's ``agent_pos``) instead of the mapper (robopolicy/semantics/proprio.py); the
controller gets the full vector in the task's order either way. Tasks: any :class:`~robopolicy.semantics.tasks.SemanticsTask` (planar push,
Meta-World). Measured: success rate with a 95% Wilson interval, semantics error (metres, per group
of the task: pusher and puck, or hand, object, goal and the gripper) and action error against the same controller fed the true semantics at the
same states. ``mapper=None`` runs the controller on the true semantics (the reference).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from robopolicy.evaluation.episodes import EpisodeHooks, episode_seeds, run_episode
from robopolicy.evaluation.stats import wilson_interval
from robopolicy.envs.observations import PROPRIO_KEY
from robopolicy.semantics.proprio import SemanticsSplit, semantics_split
from robopolicy.semantics.tasks import PlanarPushSemantics, SemanticsTask, semantics_task


class _Controller:
    """Base: a controller on semantics of one task (bound by :meth:`bind`), with a shadow copy that
    follows the true semantics for the action error. Each keeps the previous step's semantics (a
    Meta-World state holds the previous frame)."""

    task: SemanticsTask | None = None

    def bind(self, task: Any) -> "_Controller":
        self.task = semantics_task(task)
        return self

    def reset(self) -> None:
        self._prev = {False: None, True: None}

    def _state(self, state: np.ndarray, shadow: bool) -> tuple[np.ndarray, np.ndarray | None]:
        s = np.asarray(state, np.float32)
        prev, self._prev[shadow] = self._prev.get(shadow), s
        return s, prev


class ExpertController(_Controller):
    """The task's scripted expert on semantics (the upper reference); deterministic."""

    def __init__(self, task: Any):
        self.bind(task)
        self.reset()

    def act(self, state: np.ndarray, step_seed: int, shadow: bool = False) -> np.ndarray:
        """state (D,) -> action (A,)."""
        s, prev = self._state(state, shadow)
        return np.asarray(self.task.expert_action(s, prev), np.float32)


class PolicyController(_Controller):
    """A robopolicy Policy trained on ``state`` (``robopolicy.api.load_run(run_dir).policy``), run receding-horizon.

    Its ``state`` is built from semantics by the task (``SemanticsTask.policy_state``; planar push:
    the semantics themselves). A second controller follows the true semantics for the action
    error; both draw the same noise (torch is re-seeded with the same step seed before each call).
    """

    def __init__(self, run_dir: str, device: str = "auto", checkpoint: str = "last", task: Any = None):
        from robopolicy.api import load_run
        from robopolicy.policies.base import RecedingHorizonController

        self.policy = load_run(run_dir, checkpoint=checkpoint, device=device).policy
        self._main = RecedingHorizonController(self.policy)
        self._shadow = RecedingHorizonController(self.policy)
        if task is not None:
            self.bind(task)
        super().reset()

    def reset(self) -> None:
        super().reset()
        self._main.reset()
        self._shadow.reset()

    def act(self, state: np.ndarray, step_seed: int, shadow: bool = False) -> np.ndarray:
        s, prev = self._state(state, shadow)
        obs = self.task.policy_state(s, prev) if self.task is not None else s
        torch.manual_seed(step_seed)
        ctrl = self._shadow if shadow else self._main
        return ctrl.act({"state": np.asarray(obs, np.float32)[None]})[0]


def _step_seed(episode_seed: int, t: int) -> int:
    """The torch seed of step t: the controller fed f(image) and its shadow fed the truth draw the same noise."""
    return int(episode_seed) * 100_003 + int(t)


class MapperActor:
    """Actor: the mapper turns the last ``n_frames`` camera images into semantics, the controller acts on
    them; ``mapper=None`` feeds the controller the true semantics (the reference).

    ``split``: the task's :class:`~robopolicy.semantics.proprio.SemanticsSplit`; its proprio coordinates
    come from ``obs["agent_pos"]``, the rest from the mapper. None: the mapper's output as it is.
    ``last_pred`` (D,) is the vector the controller got."""

    def __init__(self, mapper: Any, controller: Any, n_frames: int = 1, split: SemanticsSplit | None = None):
        self.mapper, self.controller, self.n_frames, self.split = mapper, controller, int(n_frames), split
        self.last_pred: np.ndarray | None = None
        self._names = getattr(mapper, "semantics_names", None)
        # Checked and mapped once, before any episode: a wrong setting stops here, and act() only gathers.
        self._columns = split.columns(self._names) if mapper is not None and split is not None else None

    def reset(self, seed: int) -> None:
        self.seed, self.hist, self.last_pred = int(seed), None, None
        self.controller.reset()

    def act(self, obs, env, t: int) -> np.ndarray:
        if self.hist is None:  # the reset image repeated
            self.hist = deque([obs["image"]] * self.n_frames, maxlen=self.n_frames)
        else:
            self.hist.append(obs["image"])
        if self.mapper is None:
            return self.controller.act(env.true_semantics(), _step_seed(self.seed, t))
        reading = np.asarray(obs[PROPRIO_KEY], np.float32)[None] if PROPRIO_KEY in obs else None  # (1, P): the robot's own
        pred = self.mapper.predict(np.stack(self.hist)[None], reading)[0]  # (1, D_mapper)
        if self.split is not None:
            pred = self.split.assemble(pred, self._names, reading, self._columns)
        self.last_pred = pred[0]
        return self.controller.act(self.last_pred, _step_seed(self.seed, t))


class _ErrorsAgainstTruth(EpisodeHooks):
    """Hooks: per step, the semantics error of the mapper and the action error against the controller's
    shadow fed the true semantics at the same state."""

    def __init__(self, actor: MapperActor, task: SemanticsTask):
        self.actor, self.task, self.sem_err, self.act_err = actor, task, [], []

    def before_step(self, env, t, obs, action) -> None:
        pred, true = self.actor.last_pred, env.true_semantics()
        if pred is None:
            return
        a_ref = self.actor.controller.act(true, _step_seed(self.actor.seed, t), shadow=True)
        self.sem_err.append({g: float(e[0]) for g, e in self.task.group_errors(pred[None], true[None]).items()})
        self.act_err.append(float(np.linalg.norm(action - a_ref)))


def evaluate_transfer(mapper: Any, controller: Any, task: Any, real_env_cfg: dict, episodes: int,
                      seed: int, n_frames: int = 1, proprio: Sequence[str] = (), progress: bool = False) -> dict:
    """Run ``episodes`` episodes in the real environment; see the module docstring.

    ``progress``: a bar over the episodes with the successes so far (a Meta-World episode renders every
    step, so 50 of them take minutes on a CPU).

    ``proprio``: ``semantics.proprio_semantics``, the coordinates read from the robot instead of the mapper.
    The semantics errors are those of the vector the controller got: a coordinate read from the robot is
    exact, so a group read wholly from it reports 0 (kept, so tables of runs with and without the setting
    line up; the mean ``semantics_error_m`` counts it as 0 too, compare the groups the mapper predicts).

    Episodes follow the shared protocol (:mod:`robopolicy.evaluation.episodes`): episode i resets
    with ``seed * SEED_BLOCK + i`` and ends at its first success or the step limit. Returns
    success_rate, ci95, episodes, successes, mean_length, records (one ``EpisodeRecord`` dict per
    episode) and, with a mapper, the mean semantics error (over the position groups, m), each
    group's (``<group>_error_m``, or ``<group>_error`` for a unitless one such as the gripper) and the
    action error. ``task``: a SemanticsTask or a task that has one; the controller is bound to it.
    """
    task = semantics_task(task)
    split = semantics_split(task, proprio)
    actor = MapperActor(mapper, controller, n_frames, split)
    if hasattr(controller, "bind"):
        controller.bind(task)
    env = task.make_real_env(**real_env_cfg)
    errors = _ErrorsAgainstTruth(actor, task)
    records, successes = [], 0
    bar = tqdm(total=int(episodes), disable=not progress, unit="ep",
               desc=f"transfer {'true semantics' if mapper is None else 'mapper'}")
    try:
        for s in episode_seeds(seed, int(episodes)):
            records.append(run_episode(env, actor, s, stop_after_success=0, max_steps=env.max_episode_steps, hooks=[errors]))
            successes += bool(records[-1].success)
            bar.update(1)
            bar.set_postfix_str(f"success {successes}/{len(records)}")
    finally:
        bar.close()
        env.close()
    wins = [r.success for r in records]
    k, n = int(np.sum(wins)), len(wins)
    out = {"success_rate": k / max(n, 1), "ci95": list(wilson_interval(k, n)), "episodes": n, "successes": [bool(w) for w in wins],
           "mean_length": float(np.mean([r.steps for r in records])) if records else 0.0,
           "records": [r.to_dict() for r in records]}
    if errors.sem_err:
        out.update(_summary(task, {g: np.array([e[g] for e in errors.sem_err]) for g in task.groups}))
        out["action_error"] = float(np.mean(errors.act_err))
    return out


def _summary(task: SemanticsTask, per_group: dict[str, np.ndarray]) -> dict:
    """Mean error per group and over the position groups (``semantics_error_m``)."""
    metric = [g for g, (_, metres) in task.groups.items() if metres]
    out = {"semantics_error_m": float(np.mean(np.stack([per_group[g] for g in metric]), axis=0).mean())}
    out.update({f"{g}_error_m" if metres else f"{g}_error": float(per_group[g].mean()) for g, (_, metres) in task.groups.items()})
    return out


def offline_semantics_error(mapper: Any, images: np.ndarray, truth: np.ndarray, task: Any = None,
                            proprio: Sequence[str] = (), reading: np.ndarray | None = None) -> dict:
    """images (N, K, H, W, 3), truth (N, D) -> mean position error (m, averaged over the task's position
    groups) with its standard error over frames, and each group's mean (``offline_<group>_error[_m]``).
    ``task``: a SemanticsTask or a task that has one; None = planar push's groups (D = 4).
    ``proprio`` (needs ``task``): coordinates read from the robot, whose reading at a recorded frame is the
    true value (exact encoders), so, as in :func:`evaluate_transfer`, a group read wholly from it is 0.
    ``reading`` (N, P): the robot's reading at those frames, for a mapper that takes it as input
    (``mapper.proprio_input``; :meth:`~robopolicy.semantics.data.RealEpisodes.reading`)."""
    sem = semantics_task(task) if task is not None else None
    groups = sem.groups if sem is not None else PlanarPushSemantics.groups
    pred = mapper.predict(images, reading)[0]
    if sem is not None:
        split = semantics_split(sem, proprio)
        pred = split.assemble(pred, getattr(mapper, "semantics_names", None), split.reading_from_truth(truth))
    per = {g: (np.linalg.norm(pred[:, sl] - truth[:, sl], axis=1) if m else np.abs(pred[:, sl] - truth[:, sl]).mean(1))
           for g, (sl, m) in groups.items()}
    e = np.mean(np.stack([per[g] for g, (_, m) in groups.items() if m]), axis=0)
    out = {"offline_error_m": float(e.mean()), "offline_error_se_m": float(e.std(ddof=1) / np.sqrt(len(e))) if len(e) > 1 else 0.0}
    out.update({f"offline_{g}_error_m" if m else f"offline_{g}_error": float(per[g].mean()) for g, (_, m) in groups.items()})
    return out
