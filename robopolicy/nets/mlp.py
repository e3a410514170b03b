"""Plain MLPs: the BC regressor and an MLP denoiser with the common denoiser signature."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from robopolicy.nets.common import NoiseLevelEmbedding, expand_t


def mlp(d_in: int, hidden_dims: Sequence[int], d_out: int, dropout: float = 0.0, layer_norm: bool = True) -> nn.Sequential:
    """Linear -> [LayerNorm] -> Mish -> [Dropout] per hidden layer, then Linear. (..., d_in) -> (..., d_out)."""
    layers: list[nn.Module] = []
    d = int(d_in)
    for h in hidden_dims:
        layers += [nn.Linear(d, int(h))]
        if layer_norm:
            layers += [nn.LayerNorm(int(h))]
        layers += [nn.Mish()]
        if dropout > 0:
            layers += [nn.Dropout(dropout)]
        d = int(h)
    layers.append(nn.Linear(d, int(d_out)))
    return nn.Sequential(*layers)


class MLPDenoiser(nn.Module):
    """Denoiser ``forward(x: (B, T, A), t: (B,), cond: (B, C)) -> (B, T, A)`` on the flattened chunk.

    Input: [x flattened (T*A), noise-level embedding, cond]; a residual-free MLP of ``hidden_dims``.
    """

    def __init__(self, action_dim: int, horizon: int, cond_dim: int, *, hidden_dims: Sequence[int],
                 t_embed_dim: int, dropout: float, t_scale: float = 1.0):
        super().__init__()
        self.action_dim, self.horizon = int(action_dim), int(horizon)
        self.t_embed = NoiseLevelEmbedding(t_embed_dim, t_scale)
        self.net = mlp(self.horizon * self.action_dim + t_embed_dim + int(cond_dim), hidden_dims,
                       self.horizon * self.action_dim, dropout)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        h = torch.cat([x.reshape(b, -1), self.t_embed(expand_t(t, b, x.device)), cond], dim=-1)
        return self.net(h).view(b, self.horizon, self.action_dim)
