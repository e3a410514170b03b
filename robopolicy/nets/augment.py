"""Image augmentation that runs batched on the training device and is off in evaluation.

:class:`ImageAugment` takes float images ``(B, T, 3, H, W)`` in [0, 1] that are already on the
device and applies, per sample (the same draw for the ``T`` frames of one window, so motion
between frames is kept):

- a random shift of up to ``shift_px`` pixels (DrQ: pad by replicating the border, crop back);
- optional colour jitter: brightness and contrast factors in ``[1 - j, 1 + j]``, and an additive
  brightness offset in ``[-o, o]`` (the semantics mappers' jitter: gain and offset).

Written by hand because the libraries at hand do not do per-sample draws on a batch:
torchvision's ``v2.RandomCrop`` / ``ColorJitter`` draw one set of parameters per call, and robomimic's
``CropRandomizer`` crops smaller (it changes the image size). Everything is tensor ops, no Python
loop over samples. In ``eval()`` mode the module is the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robopolicy.errors import ConfigError


class ImageAugment(nn.Module):
    """Random shift + colour jitter, per sample, in training only. x: (B, T, C, H, W) -> same shape."""

    def __init__(self, shift_px: int, brightness: float, contrast: float, offset: float):
        # No defaults: a policy's settings are conf/encoder/small_cnn.yaml's augment block, the mapper's its color_jitter.
        super().__init__()
        if int(shift_px) < 0 or not all(0.0 <= float(v) < 1.0 for v in (brightness, contrast, offset)):
            raise ConfigError(f"augment needs shift_px >= 0 and brightness, contrast, offset in [0, 1), got {shift_px}, {brightness}, "
                              f"{contrast}, {offset}; fix policy.encoder.augment.")
        self.shift_px = int(shift_px)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.offset = float(offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.shift_px > 0:
            x = random_shift(x, self.shift_px)
        if self.brightness > 0 or self.contrast > 0 or self.offset > 0:
            x = color_jitter(x, self.brightness, self.contrast, offset=self.offset)
        return x


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """x: (B, T, C, H, W) -> each sample shifted by a whole number of pixels in [-pad, pad] (x and y).

    Replicate-pads by ``pad`` and takes an H x W window at a random integer offset per sample,
    through one ``grid_sample`` call (nearest, exact pixel copies).
    """
    b, t, c, h, w = x.shape
    padded = F.pad(x.reshape(b, t * c, h, w), (pad, pad, pad, pad), mode="replicate")
    hp, wp = h + 2 * pad, w + 2 * pad
    off = torch.randint(0, 2 * pad + 1, (b, 2), device=x.device, generator=generator).to(x.dtype)  # (B, [dx, dy])
    # Pixel centres of the output window in the padded image, in grid_sample's [-1, 1] units.
    ys = (torch.arange(h, device=x.device, dtype=x.dtype) + 0.5) * 2 / hp - 1
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) + 0.5) * 2 / wp - 1
    gy = ys.view(1, h, 1) + off[:, 1].view(b, 1, 1) * 2 / hp
    gx = xs.view(1, 1, w) + off[:, 0].view(b, 1, 1) * 2 / wp
    grid = torch.stack([gx.expand(b, h, w), gy.expand(b, h, w)], dim=-1)
    out = F.grid_sample(padded, grid, mode="nearest", padding_mode="border", align_corners=False)
    return out.view(b, t, c, h, w)


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, generator: torch.Generator | None = None,
                 offset: float = 0.0) -> torch.Tensor:
    """x: (B, T, C, H, W) in [0, 1] -> brightness x b, contrast about each frame's mean x c, + o, clamped to [0, 1].

    b, c in [1 - brightness, 1 + brightness], [1 - contrast, 1 + contrast] and o in [-offset, offset],
    drawn per sample in that order."""
    b = x.shape[0]
    shape = (b, 1, 1, 1, 1)
    out = x
    if brightness > 0:
        out = out * (1 + (torch.rand(shape, device=x.device, generator=generator, dtype=x.dtype) * 2 - 1) * brightness)
    if contrast > 0:
        mean = out.mean(dim=(2, 3, 4), keepdim=True)
        out = (out - mean) * (1 + (torch.rand(shape, device=x.device, generator=generator, dtype=x.dtype) * 2 - 1) * contrast) + mean
    if offset > 0:
        out = out + (torch.rand(shape, device=x.device, generator=generator, dtype=x.dtype) * 2 - 1) * offset
    return out.clamp(0.0, 1.0)
