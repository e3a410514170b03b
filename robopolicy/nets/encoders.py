"""Observation encoders: low-dim MLP, robomimic image encoder, and their combination over keys and time.

Inputs are *preprocessed* by the policy (low-dim keys normalised, images float in [0, 1] CHW);
the encoders only map features. The output of :class:`ObsEncoder` is one flat conditioning
vector per sample: per-step features of every key, concatenated, flattened over the ``To`` steps.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import ConfigError
from robopolicy.nets.mlp import mlp


class LowDimEncoder(nn.Module):
    """(N, D) -> (N, out_dim). Identity when ``hidden_dims`` is empty (Diffusion Policy's choice for state)."""

    def __init__(self, dim: int, hidden_dims: Sequence[int] = (), out_dim: int | None = None):
        super().__init__()
        hidden_dims = list(hidden_dims)
        if hidden_dims:
            self.out_dim = int(out_dim or hidden_dims[-1])
            self.net: nn.Module = mlp(dim, hidden_dims, self.out_dim)
        else:
            self.out_dim = int(dim)
            self.net = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def replace_batchnorm_with_groupnorm(module: nn.Module, channels_per_group: int = 16) -> nn.Module:
    """Swap every BatchNorm2d for GroupNorm(C // channels_per_group, C), in place (Diffusion Policy's fix for EMA)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            setattr(module, name, nn.GroupNorm(max(1, c // channels_per_group), c))
        else:
            replace_batchnorm_with_groupnorm(child, channels_per_group)
    return module


class ImageEncoder(nn.Module):
    """robomimic ResNet18Conv (from scratch, GroupNorm) + SpatialSoftmax + Linear; random crop in training.

    (N, 3, H, W) float in [0, 1] -> (N, feature_dim). With ``crop_shape`` the image is randomly
    cropped in training and centre-cropped in evaluation (robomimic's CropRandomizer).
    """

    def __init__(self, image_shape: Sequence[int], feature_dim: int = 64, num_kp: int = 32,
                 crop_shape: Sequence[int] | None = None, channels_per_group: int = 16):
        super().__init__()
        # Import here: robomimic prints a banner and pulls torchvision; state-only policies skip it.
        from robomimic.models.base_nets import ResNet18Conv, SpatialSoftmax
        from robomimic.models.obs_core import CropRandomizer

        h, w, c = (int(s) for s in image_shape)
        self.crop = None
        if crop_shape is not None:
            ch, cw = (int(s) for s in crop_shape)
            if not (ch < h and cw < w):
                raise ConfigError(f"crop_shape {tuple(crop_shape)} must be smaller than the image {h}x{w}; lower it or set it to null.")
            self.crop = CropRandomizer(input_shape=(c, h, w), crop_height=ch, crop_width=cw, num_crops=1)
            h, w = ch, cw
        self.backbone = replace_batchnorm_with_groupnorm(ResNet18Conv(input_channel=c, pretrained=False), channels_per_group)
        feat_shape = self.backbone.output_shape([c, h, w])
        if feat_shape[1] * feat_shape[2] < 4:
            raise ConfigError(
                f"Images of {h}x{w} (after cropping) leave a {feat_shape[1]}x{feat_shape[2]} ResNet-18 feature map, too small "
                "for spatial-softmax keypoints; use images of at least 64x64 pixels."
            )
        self.pool = SpatialSoftmax(feat_shape, num_kp=num_kp)
        self.proj = nn.Linear(int(torch.tensor(self.pool.output_shape(feat_shape)).prod()), feature_dim)
        self.out_dim = int(feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.crop is not None:
            x = self.crop.forward_in(x)
        f = self.proj(torch.flatten(self.pool(self.backbone(x)), 1))
        if self.crop is not None:
            f = self.crop.forward_out(f)
        return f


class ObsEncoder(nn.Module):
    """Encodes {key: (B, To, ...)} preprocessed observations into one vector (B, To * sum(per-key dims)).

    Low-dim keys go through :class:`LowDimEncoder`, ``rgb`` keys (per ``spec``) through
    :class:`ImageEncoder`; per-step features are concatenated in ``keys`` order and flattened over
    time. ``horizon`` is To (1 for a goal observation given as {key: (B, ...)}).
    """

    def __init__(self, spec: EnvSpec, keys: Sequence[str], horizon: int, lowdim_hidden_dims: Sequence[int] = (),
                 rgb_feature_dim: int = 64, num_kp: int = 32, crop_shape: Sequence[int] | None = None,
                 channels_per_group: int = 16):
        super().__init__()
        self.keys = list(keys)
        self.horizon = int(horizon)
        missing = [k for k in self.keys if k not in spec.obs]
        if missing:
            raise ConfigError(f"Observation keys {missing} are not in the task's spec (it has {sorted(spec.obs)}); fix obs_keys/goal_keys.")
        self.encoders = nn.ModuleDict()
        for k in self.keys:
            ks = spec.obs[k]
            if ks.kind == "rgb":
                self.encoders[k] = ImageEncoder(ks.shape, rgb_feature_dim, num_kp, crop_shape, channels_per_group)
            else:
                self.encoders[k] = LowDimEncoder(int(torch.tensor(ks.shape).prod()), lowdim_hidden_dims)
        self.step_dim = sum(e.out_dim for e in self.encoders.values())
        self.out_dim = self.step_dim * self.horizon

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """obs: {key: (B, To, D) low-dim | (B, To, 3, H, W) images} -> (B, To * step_dim)."""
        feats = []
        for k in self.keys:
            x = obs[k]
            b, t = x.shape[:2]
            x = x.reshape(b * t, *x.shape[2:])
            if isinstance(self.encoders[k], LowDimEncoder):
                x = x.flatten(1)
            feats.append(self.encoders[k](x).view(b, t, -1))
        return torch.cat(feats, dim=-1).flatten(1)
