"""Transformer denoiser (after Diffusion Policy's TransformerForDiffusion, written for this package).

Design: the action chunk is the decoder's token sequence (one token per time step, learned
positional embedding); the *memory* it cross-attends to is ``1 + n_cond_tokens`` tokens: the
noise-level embedding and the conditioning vector projected into ``n_cond_tokens`` tokens. Self
attention over the action tokens is bidirectional by default; ``causal=True`` masks the future
(Diffusion Policy's choice for its transformer). Pre-norm (LayerNorm), no BatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn

from robopolicy.nets.common import NoiseLevelEmbedding, expand_t


class TransformerDenoiser(nn.Module):
    """Denoiser ``forward(x: (B, T, A), t: (B,), cond: (B, C)) -> (B, T, A)``.

    Args:
        action_dim: A. horizon: T. cond_dim: C.
        d_model, n_heads, n_layers, dropout: transformer sizes. n_cond_tokens: memory tokens for cond.
        causal: mask attention to later action tokens. t_scale: see NoiseLevelEmbedding.
    """

    def __init__(self, action_dim: int, horizon: int, cond_dim: int, *, d_model: int, n_heads: int,
                 n_layers: int, dropout: float, n_cond_tokens: int, causal: bool,
                 t_scale: float = 1.0):
        super().__init__()
        self.horizon = int(horizon)
        self.n_cond_tokens = int(n_cond_tokens)
        self.d_model = int(d_model)
        self.in_proj = nn.Linear(action_dim, d_model)
        self.pos = nn.Parameter(torch.zeros(1, horizon, d_model))
        self.t_embed = NoiseLevelEmbedding(d_model, t_scale)
        self.cond_proj = nn.Sequential(nn.Linear(cond_dim, d_model * n_cond_tokens), nn.Mish())
        self.cond_pos = nn.Parameter(torch.zeros(1, 1 + n_cond_tokens, d_model))
        layer = nn.TransformerDecoderLayer(d_model, n_heads, 4 * d_model, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, n_layers)
        self.norm = nn.LayerNorm(d_model)
        self.out_proj = nn.Linear(d_model, action_dim)
        mask = torch.triu(torch.full((horizon, horizon), float("-inf")), diagonal=1) if causal else None
        self.register_buffer("causal_mask", mask, persistent=False)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.cond_pos, std=0.02)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: (B, T, A), t: (B,) or scalar, cond: (B, C) -> (B, T, A)."""
        b, horizon, _ = x.shape
        tokens = self.in_proj(x) + self.pos[:, :horizon]
        t_tok = self.t_embed(expand_t(t, b, x.device))[:, None]
        c_tok = self.cond_proj(cond).view(b, self.n_cond_tokens, self.d_model)
        memory = torch.cat([t_tok, c_tok], dim=1) + self.cond_pos
        mask = None if self.causal_mask is None else self.causal_mask[:horizon, :horizon]
        h = self.decoder(tokens, memory, tgt_mask=mask)
        return self.out_proj(self.norm(h))
