"""Diffusion Policy's 1-D temporal conditional U-Net (Chi et al. 2023) with FiLM conditioning.

The action chunk is treated as a 1-D signal over time with ``A`` channels. Every residual block
is modulated (FiLM: per-channel scale and bias) by one conditioning vector, the concatenation of
the noise-level embedding and the caller's ``cond`` (observation features, goal features).
GroupNorm only (no BatchNorm), so an EMA of the weights is valid.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from robopolicy.errors import ConfigError
from robopolicy.nets.common import NoiseLevelEmbedding, expand_t


class Conv1dBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish. (B, C_in, T) -> (B, C_out, T)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(_groups(n_groups, c_out), c_out),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def _groups(n_groups: int, channels: int) -> int:
    """Largest divisor of ``channels`` not above ``n_groups`` (so small test sizes still work)."""
    g = max(1, min(n_groups, channels))
    while channels % g:
        g -= 1
    return g


class ConditionalResidualBlock1D(nn.Module):
    """Two conv blocks; FiLM(cond) between them; residual connection.

    x: (B, C_in, T), cond: (B, D) -> (B, C_out, T).
    """

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.blocks = nn.ModuleList([Conv1dBlock(c_in, c_out, kernel_size, n_groups), Conv1dBlock(c_out, c_out, kernel_size, n_groups)])
        self.c_out = c_out
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.blocks[0](x)
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        h = scale * h + bias
        h = self.blocks[1](h)
        return h + self.residual(x)


class ConditionalUnet1D(nn.Module):
    """Denoiser ``forward(x: (B, T, A), t: (B,), cond: (B, C)) -> (B, T, A)``.

    Args:
        action_dim: A. horizon: T (must be divisible by 2**(len(down_dims)-1)). cond_dim: C.
        down_dims: channels per level (each level but the last halves T).
        kernel_size, n_groups: conv kernel and GroupNorm groups.
        t_embed_dim: size of the noise-level embedding; t_scale: see NoiseLevelEmbedding.
    """

    def __init__(self, action_dim: int, horizon: int, cond_dim: int, *, down_dims: Sequence[int],
                 kernel_size: int, n_groups: int, t_embed_dim: int, t_scale: float = 1.0):
        super().__init__()
        down_dims = [int(d) for d in down_dims]
        if not down_dims:
            raise ConfigError("net.down_dims is empty; give at least one channel count, e.g. [64, 128, 256].")
        factor = 2 ** (len(down_dims) - 1)
        if horizon % factor:
            raise ConfigError(
                f"The U-Net halves the action horizon {len(down_dims) - 1} times, so action_horizon={horizon} must be "
                f"divisible by {factor}; change action_horizon or use fewer net.down_dims."
            )
        self.t_embed = NoiseLevelEmbedding(t_embed_dim, t_scale)
        film_dim = t_embed_dim + int(cond_dim)
        dims = [int(action_dim)] + down_dims
        self.down = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == len(down_dims) - 1
            self.down.append(nn.ModuleList([
                ConditionalResidualBlock1D(c_in, c_out, film_dim, kernel_size, n_groups),
                ConditionalResidualBlock1D(c_out, c_out, film_dim, kernel_size, n_groups),
                nn.Conv1d(c_out, c_out, 3, stride=2, padding=1) if not last else nn.Identity(),
            ]))
        mid = down_dims[-1]
        self.mid = nn.ModuleList([ConditionalResidualBlock1D(mid, mid, film_dim, kernel_size, n_groups) for _ in range(2)])
        self.up = nn.ModuleList()
        for c_out, c_in in reversed(list(zip(down_dims[:-1], down_dims[1:]))):
            self.up.append(nn.ModuleList([
                ConditionalResidualBlock1D(2 * c_in, c_out, film_dim, kernel_size, n_groups),
                ConditionalResidualBlock1D(c_out, c_out, film_dim, kernel_size, n_groups),
                nn.ConvTranspose1d(c_out, c_out, 4, stride=2, padding=1),
            ]))
        self.final = nn.Sequential(Conv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups), nn.Conv1d(down_dims[0], action_dim, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: (B, T, A), t: (B,) or scalar noise-level input, cond: (B, C) -> (B, T, A)."""
        film = torch.cat([self.t_embed(expand_t(t, x.shape[0], x.device)), cond], dim=-1)
        h = x.transpose(1, 2)
        skips = []
        for res1, res2, downsample in self.down:
            h = res2(res1(h, film), film)
            skips.append(h)
            h = downsample(h)
        for block in self.mid:
            h = block(h, film)
        for res1, res2, upsample in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = upsample(res2(res1(h, film), film))
        return self.final(h).transpose(1, 2)
