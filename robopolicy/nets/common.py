"""Small building blocks shared by the denoisers: noise-level embedding and norm checks."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal features of a scalar noise-level input.

    t: (B,) float or int (a DDPM timestep index or an EDM ``c_noise``, already scaled) -> (B, dim).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([args.sin(), args.cos()], dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class NoiseLevelEmbedding(nn.Module):
    """Sinusoidal features of ``t * t_scale`` followed by a 2-layer MLP: (B,) -> (B, dim).

    ``t_scale`` maps the policy's noise-level input onto the range the sinusoids resolve well:
    1 for DDPM step indices (0..99), ~1000 for EDM's ``c_noise = ln(σ)/4`` (about -1.3..0).
    """

    def __init__(self, dim: int, t_scale: float = 1.0):
        super().__init__()
        self.dim = int(dim)
        self.t_scale = float(t_scale)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.Mish(), nn.Linear(dim * 4, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t * self.t_scale, self.dim))


def expand_t(t: torch.Tensor | float | int, batch: int, device: torch.device) -> torch.Tensor:
    """A scalar or (B,) noise-level input -> (B,) float tensor on ``device``."""
    t = torch.as_tensor(t, device=device)
    if t.dim() == 0:
        t = t.expand(batch)
    return t.float()


def find_batchnorm(module: nn.Module) -> tuple[str, nn.Module] | None:
    """(name, layer) of the first BatchNorm submodule, or None (EMA of weights breaks with BatchNorm statistics)."""
    return next(((n, m) for n, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)), None)


def has_batchnorm(module: nn.Module) -> bool:
    """True if any submodule is a BatchNorm layer."""
    return find_batchnorm(module) is not None
