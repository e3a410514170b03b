"""Offline "real" data: camera image trajectories with logged actions from a behaviour policy.

The learner sees :class:`RealEpisodes` (images, actions and the robot's own reading, no semantics). The true semantics are
returned separately by :func:`collect_real_episodes`, to be handed only to the annotation oracle
and to the evaluation. Frames are numbered globally: ``episode_of[i]``, ``t_of[i]`` give the
episode and step of frame ``i``; an episode of T actions has T + 1 frames (the last one is the
observation after the last action).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robopolicy.envs.observations import PROPRIO_KEY
from robopolicy.evaluation.episodes import EpisodeHooks, EpisodeRecord, episode_seeds, run_episode
from robopolicy.semantics.tasks import SemanticsTask, semantics_task


@dataclass
class RealEpisodes:
    """images[e]: (T_e + 1, H, W, 3) uint8; actions[e]: (T_e, A) float32; proprio[e]: (T_e + 1, P) float32, the robot's
    own reading (``agent_pos``) at each frame, as a robot logs its encoders with its camera (None: not recorded)."""

    images: list[np.ndarray]
    actions: list[np.ndarray]
    records: list[EpisodeRecord] = field(default_factory=list)  # how each episode went (seed, success, ...)
    proprio: list[np.ndarray] | None = None
    episode_of: np.ndarray = field(init=False)
    t_of: np.ndarray = field(init=False)
    start_of: np.ndarray = field(init=False)
    _readings: np.ndarray | None = field(init=False, repr=False)  # proprio as one (N, P) array, by frame id

    def __post_init__(self):
        lens = [len(x) for x in self.images]
        self.episode_of = np.repeat(np.arange(len(lens)), lens)
        self.t_of = np.concatenate([np.arange(n) for n in lens]) if lens else np.zeros(0, int)
        self.start_of = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(int) if lens else np.zeros(0, int)
        self._readings = None if self.proprio is None else np.concatenate(self.proprio).astype(np.float32)

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

    def reading(self, idx: np.ndarray) -> np.ndarray | None:
        """idx: (N,) frame ids -> (N, P) float32, the robot's reading at those frames; None when it was not recorded."""
        return None if self._readings is None else self._readings[np.asarray(idx, dtype=int)]


class _ImagesAndTruth(EpisodeHooks):
    """Hooks: the camera image, the robot's reading and the true semantics after the reset and after every step, and the actions."""

    def on_reset(self, env, obs, info) -> None:
        self.images, self.actions, self.truth = [obs["image"]], [], [env.true_semantics()]
        self.proprio = [np.asarray(obs[PROPRIO_KEY], np.float32)]

    def before_step(self, env, t, obs, action) -> None:
        self.actions.append(action)

    def after_step(self, env, t, obs, reward, info) -> None:
        self.images.append(obs["image"])
        self.proprio.append(np.asarray(obs[PROPRIO_KEY], np.float32))
        self.truth.append(env.true_semantics())


def collect_real_episodes(task: SemanticsTask | Any, real_env_cfg: dict, episodes: int, seed: int,
                          behaviour_noise: float, reach_steps: int, steps_after_success: int = 5,
                          max_steps: int | None = None) -> tuple[RealEpisodes, list[np.ndarray]]:
    """Roll out the noisy scripted expert (acting on the hidden true state) in the real environment.

    ``task``: a :class:`~robopolicy.semantics.tasks.SemanticsTask` or a task that has one. ``reach_steps``: the
    first steps of each episode reach to a random point of the effector's box before the expert
    (``semantics.data.reach_steps``; 0: the expert from the start).

    Episodes follow the shared protocol (:mod:`robopolicy.evaluation.episodes`): episode i resets
    with ``seed * SEED_BLOCK + i``, its expert noise comes from a generator seeded by that seed, and
    it ends ``steps_after_success`` steps after the first success or at the step limit
    (``max_steps``, default the environment's). Returns the learner's data (with one
    ``EpisodeRecord`` per episode in ``records``) and, separately, the hidden true semantics per
    episode (T_e + 1, D) for the oracle and the evaluation.
    """
    task = semantics_task(task)
    env = task.make_real_env(**real_env_cfg)
    actor = task.behaviour_actor(behaviour_noise, reach_steps)
    images, actions, truths, records, proprio = [], [], [], [], []
    try:
        for s in episode_seeds(seed, episodes):
            hook = _ImagesAndTruth()
            records.append(run_episode(env, actor, s, stop_after_success=int(steps_after_success),
                                       max_steps=int(max_steps or env.max_episode_steps), hooks=[hook]))
            images.append(np.stack(hook.images))
            actions.append(np.stack(hook.actions).astype(np.float32))
            truths.append(np.stack(hook.truth).astype(np.float32))
            proprio.append(np.stack(hook.proprio))
    finally:
        env.close()
    return RealEpisodes(images, actions, records, proprio), truths
