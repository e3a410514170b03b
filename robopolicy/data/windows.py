"""Training windows over an episode store: (To observations, Tp actions), edge-padded, goal relabelling.

A window for current step ``t`` of an episode of length ``L`` covers steps ``t-To+1 .. t-To+Tp``:
the first ``To`` of them give the observations, all ``Tp`` the actions. Steps outside ``[0, L-1]``
repeat the episode's first / last value. Every step of every chosen episode is the current step of
exactly one window, so an episode of length ``L`` gives ``L`` windows.

Reading: the rows come from a :class:`~robopolicy.data.step_arrays.StepArrays`, the store read once
and shared by the train and validation datasets and the normalizer fit. Low-dim keys are always
held in memory. Image keys are held in memory when they fit (``read="auto"``: under 2 GiB) or
streamed from zarr (``read="lazy"``): each window reads the whole zarr chunks that hold its frames
(chunk-aligned, one decode per chunk) through a bounded least-recently-used cache of decoded
chunks, so nearby windows and the ``To`` frames of one window share decodes and memory stays under
``cache_bytes`` per process (DataLoader workers each hold their own cache). Measured in
tools/bench_image_train.py.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from robopolicy.data.step_arrays import IMAGE_CACHE_LIMIT_BYTES, READ_MODES, ChunkCache, StepArrays  # noqa: F401 (re-exported)
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import ConfigError, DataError

def split_episodes(n_episodes: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle episode indices with ``seed`` and split them -> (train_idx, val_idx), each sorted int64.

    With ``val_fraction > 0`` and at least two episodes, both parts get at least one episode.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction={val_fraction} must be in [0, 1); use e.g. 0.1 for a 10% validation split.")
    n_val = int(round(n_episodes * val_fraction))
    if val_fraction > 0 and n_episodes >= 2:
        n_val = min(max(n_val, 1), n_episodes - 1)
    perm = np.random.default_rng(seed).permutation(n_episodes)
    return np.sort(perm[n_val:]).astype(np.int64), np.sort(perm[:n_val]).astype(np.int64)


def window_indices(t: int, length: int, obs_horizon: int, action_horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Step indices within one episode -> (obs (To,), action (Tp,)), clamped to ``[0, length-1]``."""
    first = t - obs_horizon + 1
    obs = np.clip(np.arange(first, first + obs_horizon), 0, length - 1)
    act = np.clip(np.arange(first, first + action_horizon), 0, length - 1)
    return obs, act


def build_index(episode_ends: np.ndarray, episodes: Sequence[int]) -> np.ndarray:
    """episode_ends: (E,) cumulative -> (N, 3) int64 rows ``(episode start, episode length, t)``."""
    starts = np.concatenate([[0], episode_ends[:-1]]).astype(np.int64)
    rows = [np.stack([np.full(n, s), np.full(n, n), np.arange(n)], axis=1)
            for s, n in ((starts[e], episode_ends[e] - starts[e]) for e in episodes)]
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 3), np.int64)


class WindowDataset(Dataset):
    """torch Dataset of training windows; items are in raw units (images stay uint8 HWC).

    item: ``{"obs": {key: (To, ...)}, "action": (Tp, A) float32, "goal": {key: (...)}}`` (goal only
    when ``goal_keys``). ``store``: a :class:`StepArrays` shared with the other datasets of the run
    (it must hold the obs, goal and ``action`` keys; ``read``/``cache_bytes`` are then its own), or a
    store / path, read here with ``read``: ``memory``, ``lazy`` (chunk-aligned reads through a
    :class:`ChunkCache` of ``cache_bytes`` per key) or ``auto`` (memory when all images are under
    2 GiB). ``cache_images`` (older name) True/False means memory/lazy.
    """

    def __init__(self, store: StepArrays | EpisodeStore | str | os.PathLike, obs_keys: Sequence[str], obs_horizon: int = 2,
                 action_horizon: int = 16, episodes: Sequence[int] | None = None, goal_keys: Sequence[str] | None = None,
                 goal_horizon: tuple[int, int] = (1, 50), seed: int = 0, cache_images: bool | None = None,
                 read: str = "auto", cache_bytes: int = 256 * 1024**2):
        if obs_horizon < 1 or action_horizon < 1:
            raise ConfigError(f"obs_horizon={obs_horizon} and action_horizon={action_horizon} must both be at least 1.")
        lo, hi = (int(h) for h in goal_horizon)
        if not 0 <= lo <= hi:
            raise ConfigError(f"goal_horizon={tuple(goal_horizon)} must be (lo, hi) with 0 <= lo <= hi.")
        self.obs_keys, self.goal_keys = list(obs_keys), list(goal_keys or [])
        needed = sorted({*self.obs_keys, *self.goal_keys, "action"})
        if isinstance(store, StepArrays):
            store.require(needed, "window dataset")
            self.arrays = store
        else:
            if cache_images is not None:
                read = "memory" if cache_images else "lazy"
            self.arrays = StepArrays(store, needed, read, cache_bytes)
        arrays = self.arrays
        self.cache_images = arrays.images_in_memory
        self.obs_horizon, self.action_horizon = int(obs_horizon), int(action_horizon)
        self.goal_horizon, self.seed, self.epoch = (lo, hi), int(seed), 0
        self.episodes = np.arange(arrays.n_episodes) if episodes is None else np.asarray(episodes, dtype=np.int64)
        if len(self.episodes) == 0:
            raise DataError(f"No episodes to sample windows from in {arrays.path}; record episodes or lower val_fraction.")
        if self.episodes.min() < 0 or self.episodes.max() >= arrays.n_episodes:
            raise DataError(f"Episode indices must be in [0, {arrays.n_episodes}) for {arrays.path}; check the split.")
        self.index = build_index(arrays.episode_ends, self.episodes)

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        """Change the goal draws (they are a function of seed, epoch and item index)."""
        self.epoch = int(epoch)

    def __getitem__(self, i: int) -> dict:
        start, length, t = (int(v) for v in self.index[i])
        obs_idx, act_idx = window_indices(t, length, self.obs_horizon, self.action_horizon)
        rows = self.arrays.rows
        item = {
            "obs": {k: torch.from_numpy(rows(k, start + obs_idx)) for k in self.obs_keys},
            "action": torch.from_numpy(rows("action", start + act_idx)),
        }
        if self.goal_keys:
            rng = np.random.default_rng([self.seed, self.epoch, int(i)])
            g = start + min(t + int(rng.integers(self.goal_horizon[0], self.goal_horizon[1] + 1)), length - 1)
            item["goal"] = {k: torch.from_numpy(rows(k, np.array([g]))[0]) for k in self.goal_keys}
        return item
