"""Transfer evaluation: a simulator-trained controller runs in the "real" environment on f(image).

Per episode: the mapper turns the last ``n_frames`` camera frames into semantics, the controller
acts on them. Measured: success rate with a 95% Wilson interval, semantics error (metres, pusher
and puck separately) and action error against the same controller fed the true semantics at the
same states. ``mapper=None`` runs the controller on the true semantics (the reference).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch

from robopolicy.envs.planar_push import PlanarPushExpert, PlanarPushTask
from robopolicy.evaluation.episodes import EpisodeHooks, episode_seeds, run_episode
from robopolicy.evaluation.stats import wilson_interval
from robopolicy.semantics.real_env import make_real_env


class ExpertController:
    """The scripted expert on semantics (the upper reference); deterministic."""

    def __init__(self, task: PlanarPushTask):
        self.expert = PlanarPushExpert(task.target_xy)

    def reset(self) -> None:
        pass

    def act(self, state: np.ndarray, step_seed: int, shadow: bool = False) -> np.ndarray:
        """state (4,) -> action (2,)."""
        return self.expert.act_state(np.asarray(state, dtype=np.float64)[None])[0].astype(np.float32)


class PolicyController:
    """A robopolicy Policy trained on ``state`` (``robopolicy.api.load_run(run_dir).policy``), run receding-horizon.

    A second controller follows the true semantics for the action error; both draw the same noise
    (torch is re-seeded with the same step seed before each call).
    """

    def __init__(self, run_dir: str, device: str = "auto", checkpoint: str = "last"):
        from robopolicy.api import load_run
        from robopolicy.policies.base import RecedingHorizonController

        self.policy = load_run(run_dir, checkpoint=checkpoint, device=device).policy
        self._main = RecedingHorizonController(self.policy)
        self._shadow = RecedingHorizonController(self.policy)

    def reset(self) -> None:
        self._main.reset()
        self._shadow.reset()

    def act(self, state: np.ndarray, step_seed: int, shadow: bool = False) -> np.ndarray:
        torch.manual_seed(step_seed)
        ctrl = self._shadow if shadow else self._main
        return ctrl.act({"state": np.asarray(state, np.float32)[None]})[0]


def _step_seed(episode_seed: int, t: int) -> int:
    """The torch seed of step t: the controller fed f(image) and its shadow fed the truth draw the same noise."""
    return int(episode_seed) * 100_003 + int(t)


class MapperActor:
    """Actor: the mapper turns the last ``n_frames`` camera images into semantics, the controller acts on
    them; ``mapper=None`` feeds the controller the true semantics (the reference)."""

    def __init__(self, mapper: Any, controller: Any, n_frames: int = 1):
        self.mapper, self.controller, self.n_frames = mapper, controller, int(n_frames)
        self.last_pred: np.ndarray | None = None

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
        self.last_pred = self.mapper.predict(np.stack(self.hist)[None])[0][0]
        return self.controller.act(self.last_pred, _step_seed(self.seed, t))


class _ErrorsAgainstTruth(EpisodeHooks):
    """Hooks: per step, the semantics error of the mapper and the action error against the controller's
    shadow fed the true semantics at the same state."""

    def __init__(self, actor: MapperActor):
        self.actor, self.sem_err, self.act_err = actor, [], []

    def before_step(self, env, t, obs, action) -> None:
        pred, true = self.actor.last_pred, env.true_semantics()
        if pred is None:
            return
        a_ref = self.actor.controller.act(true, _step_seed(self.actor.seed, t), shadow=True)
        self.sem_err.append(np.stack([np.linalg.norm(pred[:2] - true[:2]), np.linalg.norm(pred[2:4] - true[2:4])]))
        self.act_err.append(float(np.linalg.norm(action - a_ref)))


def evaluate_transfer(mapper: Any, controller: Any, task: PlanarPushTask, real_env_cfg: dict, episodes: int,
                      seed: int, n_frames: int = 1) -> dict:
    """Run ``episodes`` episodes in the real environment; see the module docstring.

    Episodes follow the shared protocol (:mod:`robopolicy.evaluation.episodes`): episode i resets
    with ``seed * SEED_BLOCK + i`` and ends at its first success or the step limit. Returns
    success_rate, ci95, episodes, successes, mean_length, records (one ``EpisodeRecord`` dict per
    episode) and, with a mapper, the mean semantics, pusher, puck and action errors.
    """
    env = make_real_env(task, **real_env_cfg)
    actor = MapperActor(mapper, controller, n_frames)
    errors = _ErrorsAgainstTruth(actor)
    records = []
    try:
        for s in episode_seeds(seed, int(episodes)):
            records.append(run_episode(env, actor, s, stop_after_success=0, max_steps=env.max_episode_steps, hooks=[errors]))
    finally:
        env.close()
    wins = [r.success for r in records]
    k, n = int(np.sum(wins)), len(wins)
    out = {"success_rate": k / max(n, 1), "ci95": list(wilson_interval(k, n)), "episodes": n, "successes": [bool(w) for w in wins],
           "mean_length": float(np.mean([r.steps for r in records])) if records else 0.0,
           "records": [r.to_dict() for r in records]}
    if errors.sem_err:
        e = np.stack(errors.sem_err)
        out.update({"semantics_error_m": float(e.mean()), "pusher_error_m": float(e[:, 0].mean()),
                    "puck_error_m": float(e[:, 1].mean()), "action_error": float(np.mean(errors.act_err))})
    return out


def offline_semantics_error(mapper: Any, images: np.ndarray, truth: np.ndarray) -> dict:
    """images (N, K, H, W, 3), truth (N, 4) -> mean position error (m) with its standard error over frames."""
    pred = mapper.predict(images)[0]
    e = 0.5 * (np.linalg.norm(pred[:, :2] - truth[:, :2], axis=1) + np.linalg.norm(pred[:, 2:4] - truth[:, 2:4], axis=1))
    return {"offline_error_m": float(e.mean()), "offline_error_se_m": float(e.std(ddof=1) / np.sqrt(len(e))) if len(e) > 1 else 0.0}
