"""Deterministic toy policies for the policy-server tests: goal-conditioned, and V-GPS-steered
through the real :class:`~robopolicy.value.vgps.ValueGuidedPolicy` with a known critic.

They run on ``tests/_eval_toys.PointTask`` (state = [pos, env goal], 10 Hz, 12 steps).
"""

from __future__ import annotations

import numpy as np
import torch

from robopolicy.policies.base import Policy
from robopolicy.value.vgps import ValueGuidedPolicy


def _greedy(obs, gain: float) -> torch.Tensor:
    s = torch.as_tensor(np.asarray(obs["state"]))[:, -1].float()  # (B, 4)
    return (gain * (s[:, 2:] - s[:, :2])).clamp(-0.1, 0.1)  # (B, 2)


class GoalBiasPolicy(Policy):
    """Goal-conditioned toy: moves toward the env goal, shifted by ``goal["state"][:2]`` (a zero
    goal succeeds like the greedy policy, a far one fails). No goal: the null goal (zero shift)."""

    def __init__(self, spec, gain: float = 0.5):
        super().__init__(spec, ["state"], obs_horizon=2, action_horizon=8, exec_horizon=4)
        self.goal_keys = ["state"]
        self.gain = gain
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def compute_loss(self, batch):  # pragma: no cover - not trained
        raise NotImplementedError

    def sample(self, obs, n=1, goal=None):
        a = _greedy(obs, self.gain)
        if goal is not None:
            a = (a + torch.tensor(np.array(goal["state"]), dtype=torch.float32)[:, :2]).clamp(-0.1, 0.1)
        T = self.action_horizon - self.obs_horizon + 1
        return a[:, None, None, :].expand(-1, n, T, -1).clone()


class CandidatePolicy(Policy):
    """Sample j is the greedy chunk plus a fixed offset ``OFFSETS[j % 8]``; only j % 8 == 7 has none,
    so unsteered (n=1) it drifts, and a critic that knows the greedy action recovers it."""

    OFFSETS = torch.tensor([[0.04, 0.04], [-0.04, 0.04], [0.04, -0.04], [-0.04, -0.04],
                            [0.06, 0.0], [0.0, 0.06], [-0.06, 0.0], [0.0, 0.0]])

    def __init__(self, spec, gain: float = 0.5):
        super().__init__(spec, ["state"], obs_horizon=2, action_horizon=8, exec_horizon=4)
        self.gain = gain
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def compute_loss(self, batch):  # pragma: no cover - not trained
        raise NotImplementedError

    def sample(self, obs, n=1, goal=None):
        a = _greedy(obs, self.gain)  # (B, 2)
        off = self.OFFSETS[torch.arange(n) % len(self.OFFSETS)]  # (n, 2)
        T = self.action_horizon - self.obs_horizon + 1
        return (a[:, None, :] + off[None]).clamp(-0.1, 0.1)[:, :, None, :].expand(-1, -1, T, -1).clone()


class GreedyCritic(torch.nn.Module):
    """Scores a chunk by minus the distance of its first action from the greedy one: (B, K)."""

    def __init__(self, spec, gain: float = 0.5):
        super().__init__()
        self.spec, self.obs_keys, self.goal_keys = spec, ["state"], []
        self.obs_horizon, self.chunk_len, self.gain = 2, 1, gain

    def score(self, obs, actions, goal=None):
        a = torch.as_tensor(actions)[:, :, 0, :]  # (B, K, A)
        return -(a - _greedy(obs, self.gain)[:, None, :]).norm(dim=-1)


def make_vgps_toy(spec, k: int = 8) -> ValueGuidedPolicy:
    return ValueGuidedPolicy(CandidatePolicy(spec), GreedyCritic(spec), k=k)


def goal_toy_factory(max_steps: int = 12):
    """ServerProcess factory (importable by name)."""
    from _eval_toys import PointTask

    return GoalBiasPolicy(PointTask(max_steps).spec)


def eval_match(episodes: int, seed: int, rate_hz: float = 10.0) -> dict:
    """Runner settings of conf/runner/eval_match.yaml for the toys (exec_horizon 4, PointTask at 10 Hz)."""
    return {"rate_hz": rate_hz, "duration_s": 0, "episodes": episodes, "seed": seed, "replan_every": 4,
            "wait_for_chunk_s": 0.5, "hold_after_s": None, "stop_after_s": None, "first_chunk_timeout_s": 30.0}
