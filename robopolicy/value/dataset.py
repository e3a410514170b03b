"""Transitions for the offline critics, read from an :class:`~robopolicy.data.store.EpisodeStore`.

Item ``i`` is the transition at one stored step ``t`` of one episode (raw environment units)::

    obs         {key: (To, ...)}   observations t-To+1 .. t (first one repeated at the episode start)
    action      (C, A)             actions t .. t+C-1 (last one repeated at the episode end)
    reward      ()                 n-step discounted reward sum_{j<m} gamma^j r[t+j]
    discount    ()                 gamma^m, m = steps actually taken (<= n_step; fewer at a terminal)
    done        ()                 a terminal was reached within those m steps
    next_obs    {key: (To, ...)}   history ending at t+m (clipped to the last stored step)
    next_action (C, A)             actions t+m .. t+m+C-1
    mc_return   ()                 Monte-Carlo return-to-go from t (Cal-QL's lower bound)
    goal        {key: (...)}       the episode's last observation, only with ``goal_keys``

Rewards are labelled from the stored ``success`` flags (see :mod:`robopolicy.value.rewards`), not
from the environment's dense reward. The store does not hold the observation after the last
action, so the last step of a truncated episode bootstraps from its own observation: a one-step
approximation on 1 transition per failing episode.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from robopolicy.data.step_arrays import StepArrays
from robopolicy.errors import DataError
from robopolicy.value.rewards import label_episode


class TransitionDataset(torch.utils.data.Dataset):
    """``store``: an EpisodeStore or path (its keys read into memory here) or a :class:`StepArrays` shared
    with the other datasets and the normalizer fit of the run (read once; items index its rows)."""

    def __init__(self, store, obs_keys: Sequence[str], obs_horizon: int = 2, chunk_len: int = 1, n_step: int = 1,
                 reward_horizon: int = 3, reward_scheme: str = "binary", gamma: float = 0.98,
                 episodes: Sequence[int] | None = None, goal_keys: Sequence[str] | None = None):
        self.obs_keys = list(obs_keys)
        self.goal_keys = list(goal_keys or [])
        self.obs_horizon, self.chunk_len, self.n_step, self.gamma = int(obs_horizon), int(chunk_len), int(n_step), float(gamma)
        if self.n_step < 1 or self.chunk_len < 1 or self.obs_horizon < 1:
            raise DataError("obs_horizon, chunk_len and n_step must all be at least 1; fix the critic/transition settings.")
        needed = set(self.obs_keys) | set(self.goal_keys) | {"action", "success"}
        missing = [k for k in needed if k not in store.keys]
        if missing:
            raise DataError(f"The dataset lacks keys {sorted(missing)} that the critic needs (it has {sorted(store.keys)}); "
                            "collect it with the same task settings.")
        episodes = list(range(store.n_episodes)) if episodes is None else list(episodes)
        if not episodes:
            raise DataError("The dataset has no episodes to train the critic on; collect some with robopolicy-collect.")
        self.arrays = store if isinstance(store, StepArrays) else StepArrays(store, sorted(needed), read="memory")
        ends = self.arrays.episode_ends
        starts = np.concatenate([[0], ends[:-1]])
        # Items index global steps of the shared arrays; labels are per global step (zero outside ``episodes``).
        n = self.arrays.n_steps
        self.labels = {"reward": np.zeros(n, np.float32), "terminal": np.zeros(n, bool), "mc_return": np.zeros(n, np.float32)}
        steps, first, last, n_success = [], [], [], 0
        for e in episodes:
            a, b = int(starts[e]), int(ends[e])
            lab = label_episode(self.arrays.get("success", slice(a, b)), reward_horizon, reward_scheme, gamma)
            for k in self.labels:
                self.labels[k][a:b] = lab[k]
            n_success += int(np.asarray(lab["terminal"]).any())
            steps.append(np.arange(a, b))
            first.append(np.full(b - a, a))
            last.append(np.full(b - a, b - 1))
        self.steps = np.concatenate(steps).astype(np.int64)
        self.first = np.concatenate(first).astype(np.int64)
        self.last = np.concatenate(last).astype(np.int64)
        self.n_success_episodes = n_success
        self.n_episodes = len(episodes)

    def __len__(self) -> int:
        return len(self.steps)

    def _obs(self, t: int, first: int, last: int, keys: list[str]) -> dict[str, np.ndarray]:
        idx = np.clip(np.arange(t - self.obs_horizon + 1, t + 1), first, last)
        return {k: self.arrays.rows(k, idx) for k in keys}

    def _chunk(self, t: int, first: int, last: int) -> np.ndarray:
        idx = np.clip(np.arange(t, t + self.chunk_len), first, last)
        return self.arrays.rows("action", idx).astype(np.float32)

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        g, first, last = int(self.steps[i]), int(self.first[i]), int(self.last[i])
        reward, m, done = 0.0, 0, False
        for j in range(self.n_step):
            t = g + j
            if t > last:
                break
            reward += self.gamma ** j * float(self.labels["reward"][t])
            m = j + 1
            if self.labels["terminal"][t]:
                done = True
                break
        nxt = min(g + m, last)
        item = {
            "obs": self._obs(g, first, last, self.obs_keys),
            "action": self._chunk(g, first, last),
            "reward": np.float32(reward),
            "discount": np.float32(self.gamma ** m),
            "done": np.float32(done),
            "next_obs": self._obs(nxt, first, last, self.obs_keys),
            "next_action": self._chunk(nxt, first, last),
            "mc_return": np.float32(self.labels["mc_return"][g]),
        }
        if self.goal_keys:
            item["goal"] = {k: self.arrays.rows(k, np.array([last]))[0] for k in self.goal_keys}
        return item
