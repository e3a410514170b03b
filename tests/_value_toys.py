"""Tiny synthetic data and stubs for the value tests."""

from __future__ import annotations

import numpy as np
import torch

from robopolicy.data.normalize import Normalizer
from robopolicy.data.store import EpisodeStore
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.policies.base import Policy

SPEC = EnvSpec(obs={"state": ObsKeySpec((2,))}, action_dim=2, action_low=(-1.0, -1.0), action_high=(1.0, 1.0),
               max_episode_steps=8, name="toy")


def make_store(path, n_episodes: int = 40, length: int = 8, seed: int = 0) -> EpisodeStore:
    """Half the episodes push +x (and succeed at the end), half push -x (and fail); states are random
    in both, so only the action tells a good transition from a bad one."""
    rng = np.random.default_rng(seed)
    store = EpisodeStore.create(path, SPEC)
    for i in range(n_episodes):
        good = i % 2 == 0
        a = np.stack([np.full(length, 0.8 if good else -0.8), np.zeros(length)], -1) + 0.05 * rng.standard_normal((length, 2))
        success = np.zeros(length, bool)
        if good:
            success[-2:] = True
        store.append_episode({"state": rng.uniform(-1, 1, (length, 2)).astype(np.float32), "action": a.astype(np.float32),
                              "reward": success.astype(np.float32), "success": success, "done": success.copy()})
    return store


def unit_normalizer() -> Normalizer:
    return Normalizer.empty({"state": (2,), "action": (2,)})


class StubPolicy(Policy):
    """Returns fixed candidate chunks ``(K, T, A)`` (tiled when more are asked for) and counts calls."""

    def __init__(self, candidates: torch.Tensor, spec: EnvSpec = SPEC, obs_keys=("state",)):
        super().__init__(spec, list(obs_keys), obs_horizon=2, action_horizon=candidates.shape[1] + 1, exec_horizon=2)
        self.candidates = candidates
        self.calls: list[int] = []
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def compute_loss(self, batch):  # pragma: no cover - not trained
        raise NotImplementedError

    def sample(self, obs, n=1, goal=None):
        self.calls.append(n)
        b = next(iter(obs.values())).shape[0]
        reps = -(-n // self.candidates.shape[0])
        c = self.candidates.repeat(reps, 1, 1)[:n]
        return c.unsqueeze(0).expand(b, -1, -1, -1).clone()


class StubCritic(torch.nn.Module):
    """Scores a chunk by its first action's first coordinate (a known score), counts calls."""

    def __init__(self, spec: EnvSpec = SPEC, obs_keys=("state",), obs_horizon: int = 2, chunk_len: int = 1):
        super().__init__()
        self.spec, self.obs_keys, self.goal_keys = spec, list(obs_keys), []
        self.obs_horizon, self.chunk_len = obs_horizon, chunk_len
        self.calls = 0

    def score(self, obs, actions, goal=None):
        self.calls += 1
        return actions[:, :, 0, 0]
