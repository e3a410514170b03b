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


def evaluate_transfer(mapper: Any, controller: Any, task: PlanarPushTask, real_env_cfg: dict, episodes: int,
                      seed: int = 10_000, n_frames: int = 1) -> dict:
    """Run ``episodes`` episodes (seeds ``seed + i``) in the real environment; see the module docstring."""
    env = make_real_env(task, **real_env_cfg)
    wins, sem_err, act_err, lengths = [], [], [], []
    try:
        for i in range(int(episodes)):
            obs, _ = env.reset(seed=seed + i)
            controller.reset()
            hist = deque([obs["image"]] * n_frames, maxlen=n_frames)
            success = False
            for t in range(env.max_episode_steps):
                true = env.true_semantics()
                step_seed = (seed + i) * 100_003 + t
                if mapper is None:
                    a = controller.act(true, step_seed)
                else:
                    pred = mapper.predict(np.stack(hist)[None])[0][0]
                    a = controller.act(pred, step_seed)
                    a_ref = controller.act(true, step_seed, shadow=True)
                    sem_err.append(np.stack([np.linalg.norm(pred[:2] - true[:2]), np.linalg.norm(pred[2:4] - true[2:4])]))
                    act_err.append(float(np.linalg.norm(a - a_ref)))
                obs, _, _, _, info = env.step(a)
                hist.append(obs["image"])
                if info["success"]:
                    success = True
                    break
            wins.append(success)
            lengths.append(t + 1)
    finally:
        env.close()
    k, n = int(np.sum(wins)), len(wins)
    out = {"success_rate": k / max(n, 1), "ci95": list(wilson_interval(k, n)), "episodes": n, "successes": [bool(w) for w in wins],
           "mean_length": float(np.mean(lengths)) if lengths else 0.0}
    if sem_err:
        e = np.stack(sem_err)
        out.update({"semantics_error_m": float(e.mean()), "pusher_error_m": float(e[:, 0].mean()),
                    "puck_error_m": float(e[:, 1].mean()), "action_error": float(np.mean(act_err))})
    return out


def offline_semantics_error(mapper: Any, images: np.ndarray, truth: np.ndarray) -> dict:
    """images (N, K, H, W, 3), truth (N, 4) -> mean position error (m) with its standard error over frames."""
    pred = mapper.predict(images)[0]
    e = 0.5 * (np.linalg.norm(pred[:, :2] - truth[:, :2], axis=1) + np.linalg.norm(pred[:, 2:4] - truth[:, 2:4], axis=1))
    return {"offline_error_m": float(e.mean()), "offline_error_se_m": float(e.std(ddof=1) / np.sqrt(len(e))) if len(e) > 1 else 0.0}
