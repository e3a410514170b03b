"""Observation encoders: low-dim MLP, image encoders, and their combination over keys and time.

Inputs are *preprocessed* by :class:`~robopolicy.nets.obs_preprocessor.ObservationPreprocessor`
(low-dim keys normalised, images float in [0, 1] CHW, on the training device); the encoders only
map features. The output of :class:`ObsEncoder` is one
flat conditioning vector per sample: per-step features of every key, concatenated, flattened over
the ``To`` steps.

Image encoders (choose with ``+encoder@policy.encoder=<name>``, conf/encoder/):
- :class:`ImageEncoder` (default, ``rgb: null``): robomimic's ResNet-18 with GroupNorm and spatial
  softmax, Diffusion Policy's encoder.
- :class:`SmallConvEncoder` (``small_cnn``): a DrQ-style stem of a few 3x3 convs (the first ones
  strided) with GroupNorm, spatial softmax and a linear layer; sized for CPU-scale runs. The
  semantics mappers use it too (padded, Mish, last conv plain: conf/semantics.yaml).

Every setting is a required argument; the values are written once, in the YAML: the ``encoder``
block of conf/policy/*.yaml and conf/critic/*.yaml (all of :class:`ObsEncoder`'s settings), an image
encoder's in conf/encoder/*.yaml and conf/semantics.yaml (``robopolicy.defaults.group_config`` reads
them from Python). Runs saved before lack some; robopolicy.utils.legacy fills those when they load.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import ConfigError
from robopolicy.nets.augment import ImageAugment
from robopolicy.nets.mlp import mlp


class LowDimEncoder(nn.Module):
    """(N, D) -> (N, out_dim). Identity when ``hidden_dims`` is empty (Diffusion Policy's choice for state)."""

    def __init__(self, dim: int, hidden_dims: Sequence[int]):
        super().__init__()
        hidden_dims = list(hidden_dims)
        if hidden_dims:
            self.out_dim = int(hidden_dims[-1])
            self.net: nn.Module = mlp(dim, hidden_dims, self.out_dim)
        else:
            self.out_dim = int(dim)
            self.net = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def replace_batchnorm_with_groupnorm(module: nn.Module, channels_per_group: int) -> nn.Module:
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

    def __init__(self, image_shape: Sequence[int], *, feature_dim: int, num_kp: int, crop_shape: Sequence[int] | None,
                 channels_per_group: int):
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


class _ConvStem(nn.Module):
    """The conv stem the small encoders share: (N, C, H, W) float in [0, 1] -> a (c, h, w) feature map.

    ``channels[i]`` output channels of conv i (3x3, stride ``strides[i]``, zero padding ``padding``), each
    followed by GroupNorm(min(groups, C)) (EMA-safe, unlike BatchNorm) and ``activation`` (``relu`` or
    ``mish``); with ``plain_last`` the last conv has neither. A subclass sets ``pool`` and ``proj``, the
    head that turns the map into ``feature_dim`` features.
    """

    ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "mish": nn.Mish}

    def __init__(self, image_shape: Sequence[int], *, feature_dim: int, channels: Sequence[int], strides: Sequence[int],
                 groups: int, padding: int, activation: str, plain_last: bool):
        super().__init__()
        name = type(self).__name__
        h, w, c = (int(s) for s in image_shape)
        if len(channels) != len(strides) or not channels:
            raise ConfigError(f"{name} needs as many strides as channels, got {list(channels)} and {list(strides)}; fix conf/encoder.")
        if activation not in self.ACTIVATIONS:
            raise ConfigError(f"Unknown {name} activation {activation!r}; use one of {sorted(self.ACTIVATIONS)}.")
        layers: list[nn.Module] = []
        pad = int(padding)
        for i, (ch, st) in enumerate(zip(channels, strides)):
            ch, st = int(ch), int(st)
            layers.append(nn.Conv2d(c, ch, 3, stride=st, padding=pad))
            if not (plain_last and i == len(channels) - 1):
                layers += [nn.GroupNorm(min(int(groups), ch), ch), self.ACTIVATIONS[activation]()]
            c = ch
            h, w = (h + 2 * pad - 3) // st + 1, (w + 2 * pad - 3) // st + 1
        if h < 1 or w < 1:
            raise ConfigError(f"The image of {image_shape} is too small for {name}'s convs; use fewer strides or larger images.")
        self.trunk = nn.Sequential(*layers)
        self.feat_shape = [c, h, w]
        self.out_dim = int(feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.flatten(self.pool(self.trunk(x)), 1))


class SmallConvEncoder(_ConvStem):
    """DrQ-style conv stem + spatial softmax + Linear, for CPU-scale runs (policies and semantics mappers).

    (N, C, H, W) float in [0, 1] -> (N, feature_dim): :class:`_ConvStem`, then ``num_kp`` spatial-softmax
    keypoints (robomimic's layer) and a Linear. ``plain_last`` lets the keypoint layer see signed features.
    """

    def __init__(self, image_shape: Sequence[int], *, feature_dim: int, channels: Sequence[int], strides: Sequence[int],
                 num_kp: int, groups: int, padding: int, activation: str, plain_last: bool):
        super().__init__(image_shape, feature_dim=feature_dim, channels=channels, strides=strides, groups=groups,
                         padding=padding, activation=activation, plain_last=plain_last)
        from robomimic.models.base_nets import SpatialSoftmax

        c, h, w = self.feat_shape
        if h * w < 4:
            raise ConfigError(f"The image of {image_shape} leaves a {h}x{w} feature map, too small for keypoints; use fewer strides or larger images.")
        self.pool = SpatialSoftmax(self.feat_shape, num_kp=num_kp)
        self.proj = nn.Linear(int(torch.tensor(self.pool.output_shape(self.feat_shape)).prod()), self.out_dim)


class SmallConvFlatEncoder(_ConvStem):
    """:class:`_ConvStem` with DrQ's head instead of spatial softmax (``small_cnn_flat``).

    (N, C, H, W) float in [0, 1] -> (N, feature_dim): the last feature map is flattened into
    Linear -> LayerNorm -> tanh (Yarats et al. 2021), so every cell of the map reaches the features,
    not only the expected positions of a few keypoints. On the multimodal task (the goal disc seen
    only in the picture) it lifts BESO from 0.72-0.75 to 1.00 (docs/results/visuomotor.md).
    """

    def __init__(self, image_shape: Sequence[int], *, feature_dim: int, channels: Sequence[int], strides: Sequence[int],
                 groups: int, padding: int, activation: str, plain_last: bool):
        super().__init__(image_shape, feature_dim=feature_dim, channels=channels, strides=strides, groups=groups,
                         padding=padding, activation=activation, plain_last=plain_last)
        c, h, w = self.feat_shape
        self.pool = nn.Flatten(1)
        self.proj = nn.Sequential(nn.Linear(c * h * w, self.out_dim), nn.LayerNorm(self.out_dim), nn.Tanh())


class PrivilegedInputError(ConfigError):
    """An image policy would also see privileged simulator state."""


def check_privileged(spec: EnvSpec, keys: Sequence[str], allow_privileged: Sequence[str]) -> None:
    """Refuse privileged keys (``spec.extra["privileged_keys"]``) beside camera keys unless allowed by name.

    An "image" policy that also reads the simulator's object/goal positions is not a visuomotor
    policy; it must be asked for explicitly (``policy.encoder.allow_privileged=[state]``).
    """
    rgb = [k for k in keys if k in spec.obs and spec.obs[k].kind == "rgb"]
    hidden = [k for k in keys if k in set(spec.extra.get("privileged_keys", [])) and k not in set(allow_privileged)]
    if rgb and hidden:
        raise PrivilegedInputError(
            f"The policy reads camera keys {rgb} and also privileged simulator state {hidden} (object and goal positions); "
            f"use task.obs=visuomotor or leave {hidden} out of policy.obs_keys, or allow it by name with "
            f"policy.encoder.allow_privileged={hidden}."
        )


class ObsEncoder(nn.Module):
    """Encodes {key: (B, To, ...)} preprocessed observations into one vector (B, To * sum(per-key dims)).

    Low-dim keys go through :class:`LowDimEncoder`, ``rgb`` keys (per ``spec``) through an image
    encoder: ``rgb`` (a ``_target_`` config, called with ``image_shape``) or, when None, the robomimic
    :class:`ImageEncoder` built from ``rgb_feature_dim, num_kp, crop_shape, channels_per_group``.
    ``share_rgb_encoder``: one encoder for every camera (they must have one shape), else one per
    camera. All ``B * To`` frames of a camera (of every camera, when shared) go through the encoder in
    one call. ``augment``: :class:`ImageAugment` options (training only). ``channels_last``,
    ``autocast_bf16`` and ``compile`` apply to the image encoders on CUDA only.
    Per-step features are concatenated in ``keys`` order and flattened over time. ``horizon`` is To
    (1 for a goal observation given as {key: (B, ...)}).
    """

    def __init__(self, spec: EnvSpec, keys: Sequence[str], horizon: int, *, lowdim_hidden_dims: Sequence[int],
                 rgb_feature_dim: int, num_kp: int, crop_shape: Sequence[int] | None, channels_per_group: int,
                 rgb: Mapping[str, Any] | Any | None, share_rgb_encoder: bool, augment: Mapping[str, Any] | None,
                 allow_privileged: Sequence[str], channels_last: bool, autocast_bf16: bool, compile: bool):
        # No defaults: the settings are a policy's or critic's `encoder` block (conf/policy/*.yaml, conf/critic/*.yaml).
        super().__init__()
        self.keys = list(keys)
        self.horizon = int(horizon)
        missing = [k for k in self.keys if k not in spec.obs]
        if missing:
            raise ConfigError(f"Observation keys {missing} are not in the task's spec (it has {sorted(spec.obs)}); fix obs_keys/goal_keys.")
        check_privileged(spec, self.keys, list(allow_privileged or []))
        self.rgb_keys = [k for k in self.keys if spec.obs[k].kind == "rgb"]
        shapes = {tuple(spec.obs[k].shape) for k in self.rgb_keys}
        self.shared = bool(share_rgb_encoder) and len(self.rgb_keys) > 0
        if self.shared and len(shapes) > 1:
            raise ConfigError(f"share_rgb_encoder needs cameras of one shape, got {sorted(shapes)}; give them one task.camera_size or set it false.")

        def make_rgb(shape):
            if rgb is None:
                return ImageEncoder(shape, feature_dim=rgb_feature_dim, num_kp=num_kp, crop_shape=crop_shape,
                                    channels_per_group=channels_per_group)
            if callable(rgb):  # Hydra already made a partial of it (``_partial_: true`` in conf/encoder)
                return rgb(image_shape=list(shape))
            from hydra.utils import instantiate

            cfg = {k: v for k, v in dict(rgb).items() if k != "_partial_"}
            return instantiate(cfg, image_shape=list(shape), _convert_="all")

        self.encoders = nn.ModuleDict()
        for k in self.keys:
            ks = spec.obs[k]
            if ks.kind == "rgb":
                if not self.shared:
                    self.encoders[k] = make_rgb(ks.shape)
            else:
                self.encoders[k] = LowDimEncoder(int(torch.tensor(ks.shape).prod()), lowdim_hidden_dims)
        self.shared_rgb = make_rgb(spec.obs[self.rgb_keys[0]].shape) if self.shared else None
        if augment:
            augment = _complete(ImageAugment.__init__, augment, "encoder.augment", "conf/encoder/small_cnn.yaml's augment")
        self.augment = ImageAugment(**augment) if augment else None
        self.channels_last, self.autocast_bf16, self.compile = bool(channels_last), bool(autocast_bf16), bool(compile)
        self._compiled: dict[str, Any] = {}  # torch.compile'd encoders (CUDA only), outside the state dict
        dims = {k: self._rgb_module(k).out_dim if k in self.rgb_keys else self.encoders[k].out_dim for k in self.keys}
        self.step_dim = sum(dims.values())
        self.out_dim = self.step_dim * self.horizon

    def _rgb_module(self, key: str) -> nn.Module:
        return self.shared_rgb if self.shared else self.encoders[key]

    def _run_rgb(self, name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) on the device -> (N, F) float32, with the CUDA-only speed options."""
        cuda = x.is_cuda
        if cuda and self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        fn = module
        if cuda and self.compile:
            if name not in self._compiled:
                self._compiled[name] = torch.compile(module)
            fn = self._compiled[name]
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and self.autocast_bf16 else contextlib.nullcontext()
        with ctx:
            return fn(x).float()

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """obs: {key: (B, To, D) low-dim | (B, To, 3, H, W) images}, preprocessed -> (B, To * step_dim)."""
        return self.features(obs)

    def features(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """obs: {key: (B, To, D) low-dim | (B, To, 3, H, W) images}, preprocessed -> (B, To * step_dim)."""
        feats: dict[str, torch.Tensor] = {}
        images = {}
        for k in self.keys:
            x = obs[k]
            b, t = x.shape[:2]
            if k in self.rgb_keys:
                images[k] = self.augment(x) if self.augment is not None else x
            else:
                feats[k] = self.encoders[k](x.reshape(b * t, -1)).view(b, t, -1)
        if images and self.shared:
            stacked = torch.cat([v.flatten(0, 1) for v in images.values()], dim=0)  # (n_cam * B * To, 3, H, W)
            out = self._run_rgb("shared", self.shared_rgb, stacked).chunk(len(images), dim=0)
            for k, f in zip(images, out):
                feats[k] = f.view(images[k].shape[0], images[k].shape[1], -1)
        else:
            for k, v in images.items():
                feats[k] = self._run_rgb(k, self.encoders[k], v.flatten(0, 1)).view(v.shape[0], v.shape[1], -1)
        return torch.cat([feats[k] for k in self.keys], dim=-1).flatten(1)


def _setting_names(fn) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values() if p.name not in ("self", "spec", "keys", "horizon")]


def _complete(fn, given: Mapping[str, Any] | None, what: str, block: str) -> dict:
    """``given`` as keyword arguments of ``fn``; ConfigError naming the missing and unknown settings."""
    settings = dict(given or {})
    names = _setting_names(fn)
    missing = [k for k in names if k not in settings]
    unknown = sorted(k for k in settings if k not in names)
    if missing or unknown:
        problem = " and ".join(([f"lack {missing}"] if missing else []) + ([f"have unknown keys {unknown}"] if unknown else []))
        raise ConfigError(f"The {what} settings {problem}; write the whole block ({block}) and change only what differs.")
    return settings


def encoder_setting_names() -> list[str]:
    """The keys of a policy's or critic's ``encoder`` block: :class:`ObsEncoder`'s settings."""
    return _setting_names(ObsEncoder.__init__)


def checked_encoder_settings(encoder: Mapping[str, Any] | None) -> dict:
    """``encoder`` as keyword arguments for :class:`ObsEncoder`; ConfigError when a setting is missing or unknown."""
    return _complete(ObsEncoder.__init__, encoder, "encoder", "conf/obs_encoder/default.yaml (the `encoder` block of every policy and critic)")
