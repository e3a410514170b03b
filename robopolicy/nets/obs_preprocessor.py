"""The one observation preprocessor: raw observation dicts in environment units -> network features.

Policies (:class:`~robopolicy.policies.common.ChunkPolicy`), critics
(:class:`~robopolicy.value.critic.Critic`) and, for its image part, the semantics mapper and VAE
all turn raw observations into network inputs here, so the rules are written once:

- every key the model reads must be present; its trailing shape must be the spec's;
- histories ``(B, T, ...)`` need ``T >= horizon`` steps and the last ``horizon`` are used (a policy
  is given exactly ``To``; V-GPS hands a critic the longer history of its policy); a goal is one
  step ``(B, ...)`` (``horizon=None``);
- low-dim keys: float32, checked for NaN/inf (on the host for arrays, so a device copy costs no
  sync), normalised with the model's :class:`~robopolicy.data.normalize.Normalizer`;
- camera keys: uint8 ``(..., H, W, 3)`` moved to the device *as uint8* (4x less to copy), then
  float ``(..., 3, H, W)`` in [0, 1] (:func:`images_to_float`); random augmentation in training
  only (:class:`~robopolicy.nets.augment.ImageAugment`, inside the encoder);
- features: :class:`~robopolicy.nets.encoders.ObsEncoder` (per-camera or shared image encoders,
  low-dim MLPs or identity), flattened over time.

:class:`ObservationPreprocessor` *is* an :class:`ObsEncoder` (same children), so a model's
state-dict names (``obs_encoder.encoders.<key>...``) are those checkpoints already carry. The
normalizer is owned and saved by the model; the preprocessor keeps a reference that is not a child
module (a second registration would save the same tensors twice).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import DataError
from robopolicy.nets.encoders import ObsEncoder, checked_encoder_settings


def images_to_float(x: torch.Tensor) -> torch.Tensor:
    """(..., H, W, C) uint8 (or float already in [0, 1]) -> (..., C, H, W) float32 in [0, 1]."""
    x = x.movedim(-1, -3)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def to_device(v: Any, device: torch.device) -> torch.Tensor:
    """An array or tensor -> a tensor on ``device`` with its dtype kept (uint8 stays uint8, float64 -> float32)."""
    t = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
    if t.dtype == torch.float64:
        t = t.float()
    return t.to(device, non_blocking=True)


class ObservationPreprocessor(ObsEncoder):
    """Raw {key: (B, T, ...)} (or {key: (B, ...)} with ``horizon=None``) -> features (B, horizon * step_dim).

    Args:
        spec: the task's EnvSpec (kinds and shapes of the keys).
        keys: the observation keys the model reads, in feature order.
        horizon: steps of history the model reads (To), or None for a single goal observation.
        normalizer: the model's fitted Normalizer (statistics for every low-dim key in ``keys``).
        encoder: every :class:`ObsEncoder` setting (``lowdim_hidden_dims``, ``rgb``, ``share_rgb_encoder``,
            ``augment``, ...): the ``encoder`` block of a policy or critic config.
        what: how errors name the input ("observation", "goal").
    """

    def __init__(self, spec: EnvSpec, keys: Sequence[str], horizon: int | None, normalizer: torch.nn.Module,
                 encoder: Mapping[str, Any], what: str = "observation"):
        super().__init__(spec, keys, 1 if horizon is None else int(horizon), **checked_encoder_settings(encoder))
        self.history = horizon is not None
        self.what = what
        self.kinds = {k: spec.obs[k].kind for k in self.keys}
        self.shapes = {k: tuple(int(s) for s in spec.obs[k].shape) for k in self.keys}
        self.__dict__["normalizer"] = normalizer  # a reference, not a child: the model registers and saves it

    def prepare(self, obs: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        """Raw obs -> {key: (B, horizon, D) normalised | (B, horizon, 3, H, W) float in [0, 1]} on ``device``."""
        missing = [k for k in self.keys if k not in obs]
        if missing:
            raise DataError(f"The {self.what} lacks keys {missing} that the model needs (it has {sorted(obs)}); "
                            f"pass every key in {self.keys}.")
        out = {}
        for k in self.keys:
            v = obs[k]
            lowdim = self.kinds[k] != "rgb"
            host_checked = lowdim and not isinstance(v, torch.Tensor)
            if host_checked:
                arr = np.asarray(v)
                if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    raise DataError(f"{self.what} key {k!r} contains NaN or inf; check the sensor or dataset.")
            x = to_device(v, device)
            raw_shape = tuple(x.shape)
            if not self.history:
                x = x.unsqueeze(1)
            if x.dim() != 2 + len(self.shapes[k]) or x.shape[1] < self.horizon or tuple(x.shape[2:]) != self.shapes[k]:
                steps = f"at least {self.horizon} steps of " if self.history else ""
                raise DataError(f"{self.what} key {k!r} has shape {raw_shape} but the model expects {steps}"
                                f"(B, {', '.join(map(str, (self.horizon, *self.shapes[k])))}); pass histories of obs_horizon "
                                "steps in the task's units.")
            x = x[:, x.shape[1] - self.horizon:]
            if lowdim:
                x = x.float()
                if not host_checked and not torch.isfinite(x).all():
                    raise DataError(f"{self.what} key {k!r} contains NaN or inf; check the sensor or dataset.")
                x = self.normalizer.normalize(k, x)
            else:
                x = images_to_float(x)
            out[k] = x
        return out

    def forward(self, obs: Mapping[str, Any], device: torch.device | None = None) -> torch.Tensor:
        """Raw obs -> (B, horizon * step_dim) features; ``device`` defaults to the normalizer's."""
        if device is None:
            device = next(self.normalizer.buffers()).device
        return self.features(self.prepare(obs, device))
