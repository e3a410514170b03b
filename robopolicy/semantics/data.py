"""Offline "real" data: camera image trajectories with logged actions from a behaviour policy.

The learner sees :class:`RealEpisodes` (images and actions, no semantics). The true semantics are
returned separately by :func:`collect_real_episodes`, to be handed only to the annotation oracle
and to the evaluation. Frames are numbered globally: ``episode_of[i]``, ``t_of[i]`` give the
episode and step of frame ``i``; an episode of T actions has T + 1 frames (the last one is the
observation after the last action).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robopolicy.envs.planar_push import PlanarPushExpert, PlanarPushTask
from robopolicy.semantics.real_env import make_real_env


@dataclass
class RealEpisodes:
    """images[e]: (T_e + 1, H, W, 3) uint8; actions[e]: (T_e, A) float32."""

    images: list[np.ndarray]
    actions: list[np.ndarray]
    episode_of: np.ndarray = field(init=False)
    t_of: np.ndarray = field(init=False)
    start_of: np.ndarray = field(init=False)

    def __post_init__(self):
        lens = [len(x) for x in self.images]
        self.episode_of = np.repeat(np.arange(len(lens)), lens)
        self.t_of = np.concatenate([np.arange(n) for n in lens]) if lens else np.zeros(0, int)
        self.start_of = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(int) if lens else np.zeros(0, int)

    @property
    def n_frames(self) -> int:
        return int(len(self.episode_of))

    def frame_id(self, episode: int, t: int) -> int:
        return int(self.start_of[episode] + t)

    def stacked(self, idx: np.ndarray, n_frames: int = 1) -> np.ndarray:
        """idx: (N,) frame ids -> (N, n_frames, H, W, 3) uint8: frames t-n_frames+1..t (first frame repeated)."""
        idx = np.asarray(idx, dtype=int)
        out = []
        for i in idx:
            e, t = self.episode_of[i], self.t_of[i]
            ts = np.clip(np.arange(t - n_frames + 1, t + 1), 0, None)
            out.append(self.images[e][ts])
        return np.stack(out) if out else np.zeros((0, n_frames) + self.images[0].shape[1:], np.uint8)


def collect_real_episodes(task: PlanarPushTask, real_env_cfg: dict, episodes: int, seed: int,
                          behaviour_noise: float = 0.3, steps_after_success: int = 5,
                          max_steps: int | None = None) -> tuple[RealEpisodes, list[np.ndarray]]:
    """Roll out the noisy scripted expert (acting on the hidden true state) in the real environment.

    Episode i uses seed ``seed + i``. Returns the learner's data and, separately, the hidden true
    semantics per episode (T_e + 1, 4) for the oracle and the evaluation.
    """
    env = make_real_env(task, **real_env_cfg)
    rng = np.random.default_rng(seed)
    expert = PlanarPushExpert(task.target_xy, rng=rng, noise=behaviour_noise)
    horizon = int(max_steps or env.max_episode_steps)
    images, actions, truths = [], [], []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            imgs, acts, sem = [obs["image"]], [], [env.true_semantics()]
            left = None
            for _ in range(horizon):
                a = expert.act({"state": sem[-1]})
                obs, _, _, _, info = env.step(a)
                imgs.append(obs["image"])
                acts.append(a)
                sem.append(env.true_semantics())
                if info["success"] and left is None:
                    left = steps_after_success
                if left is not None:
                    left -= 1
                    if left < 0:
                        break
            images.append(np.stack(imgs))
            actions.append(np.stack(acts).astype(np.float32))
            truths.append(np.stack(sem).astype(np.float32))
    finally:
        env.close()
    return RealEpisodes(images, actions), truths
