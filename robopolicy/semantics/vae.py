"""A small convolutional VAE of camera frames, for the diversity acquisition (latent = encoder mean).

Trained without labels on every offline frame by the one Trainer. Input (B, H, W, 3) uint8 with H
and W divisible by 8; latent (B, Z). Loss: per-pixel Bernoulli-free MSE summed over pixels plus
``beta`` x KL, averaged over the batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

# Imported at module load on purpose: the Trainer pulls in triton (through diffusers and torch._dynamo),
# and importing triton after an EGL context exists segfaults (seen on CPU with Mesa EGL).
from robopolicy.training import Trainer  # noqa: E402
from robopolicy.errors import ConfigError
from robopolicy.nets.obs_preprocessor import images_to_float


class ConvVAE(nn.Module):
    def __init__(self, image_size: int, latent_dim: int, channels: int, beta: float):
        # No defaults: every value comes from conf/semantics.yaml's vae block.
        super().__init__()
        if int(image_size) % 8:
            raise ConfigError(f"The VAE needs an image size divisible by 8, got {image_size}; set real_env.image_size to e.g. 64.")
        c, s = int(channels), int(image_size) // 8
        self.beta, self.s, self.c = float(beta), s, c
        self.enc = nn.Sequential(
            nn.Conv2d(3, c, 4, 2, 1), nn.Mish(), nn.Conv2d(c, c, 4, 2, 1), nn.Mish(), nn.Conv2d(c, c, 4, 2, 1), nn.Mish(),
            nn.Flatten(), nn.Linear(c * s * s, 2 * int(latent_dim)))
        self.dec_in = nn.Linear(int(latent_dim), c * s * s)
        self.dec = nn.Sequential(
            nn.Mish(), nn.ConvTranspose2d(c, c, 4, 2, 1), nn.Mish(), nn.ConvTranspose2d(c, c, 4, 2, 1), nn.Mish(),
            nn.ConvTranspose2d(c, 3, 4, 2, 1))

    @staticmethod
    def _prep(images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1] (the preprocessing policies and mappers share)."""
        return images_to_float(images)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W, 3) uint8 -> mean, log-variance (B, Z)."""
        mu, logvar = self.enc(self._prep(images)).chunk(2, dim=-1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, Z) -> (B, 3, H, W) reconstruction in [0, 1] (logits through a sigmoid)."""
        return torch.sigmoid(self.dec(self.dec_in(z).view(-1, self.c, self.s, self.s)))

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """batch: image (B, H, W, 3) uint8."""
        x = batch["image"]
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        rec = ((self.decode(z) - self._prep(x)) ** 2).flatten(1).sum(1).mean()
        kl = (0.5 * (mu**2 + logvar.exp() - 1 - logvar)).sum(1).mean()
        return rec + self.beta * kl, {"rec": float(rec.detach()), "kl": float(kl.detach())}

    @torch.no_grad()
    def latents(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, Z) float32 encoder means."""
        self.eval()
        dev = next(self.parameters()).device
        out = [self.encode(torch.as_tensor(images[i : i + batch_size]).to(dev))[0].cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(out).numpy().astype(np.float32)


class _Frames(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray):
        self.images = torch.as_tensor(np.ascontiguousarray(images))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i]}


def train_vae(images: np.ndarray, vae_cfg: Any, trainer_cfg: Any, run_dir: str | Path, seed: int = 0) -> ConvVAE:
    """Fit a :class:`ConvVAE` (``vae_cfg``: image_size, latent_dim, channels, beta) on (N, H, W, 3) frames."""
    vae = ConvVAE(**OmegaConf.to_container(OmegaConf.create(vae_cfg), resolve=True))
    trainer = Trainer(vae, _Frames(images), OmegaConf.merge(OmegaConf.create(trainer_cfg), {"seed": int(seed)}), run_dir)
    trainer.fit()
    return trainer.eval_model().eval()
