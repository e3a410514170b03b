"""Behaviour-cloning baseline: an MLP maps the conditioning vector to the whole action chunk (MSE).

Deterministic: ``sample(obs, n)`` repeats the one predicted chunk n times. It averages the modes of
multimodal demonstrations, which is what the diffusion policies are compared against.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from robopolicy.nets.mlp import mlp
from robopolicy.policies.base import ObsDict
from robopolicy.policies.common import ChunkPolicy


class BCPolicy(ChunkPolicy):
    """Args (beyond ChunkPolicy): hidden_dims, dropout of the MLP. ``net_cfg`` is accepted and ignored
    (BC always uses its own MLP) so that ``build_policy`` can pass the same arguments to every policy.
    """

    def __init__(self, spec, normalizer, *, hidden_dims: Sequence[int], dropout: float,
                 net_cfg: Any = None, sampler: Any = None, cond_drop_prob: float = 0.1, **kwargs: Any):
        # Values from conf/policy/bc.yaml; cond_drop_prob (goal dropout) is not in that file, so its default is here.
        super().__init__(spec, normalizer, cond_drop_prob=cond_drop_prob, **kwargs)
        self.net = mlp(self.cond_dim, list(hidden_dims), self.action_horizon * self.action_dim, dropout)

    def set_sampler(self, sampler_cfg: Any) -> None:
        """BC has no sampler; accepted so evaluation code can call it on any policy."""

    def _chunk(self, cond: torch.Tensor) -> torch.Tensor:
        return self.net(cond).view(-1, self.action_horizon, self.action_dim)

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        cond, a = self.encode_batch(batch)
        loss = F.mse_loss(self._chunk(cond), a)
        return loss, {}  # the trainer logs the loss itself (summed on device: no host sync per step)

    @torch.no_grad()
    def sample(self, obs: ObsDict, n: int = 1, goal: ObsDict | None = None) -> torch.Tensor:
        chunk = self._chunk(self.encode(obs, goal))
        b = chunk.shape[0]
        return self.chunk_to_env(chunk.repeat_interleave(n, dim=0), b, n)
