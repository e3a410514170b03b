"""Per-key normalisation stored as module buffers, so it travels inside the model's safetensors.

Every mode reduces to an affine map ``y = (x - offset) * scale`` per feature:

* ``minmax``   -> ``[-1, 1]``: offset = (max + min) / 2, scale = 2 / (max - min)
* ``meanstd``  -> zero mean, unit std: offset = mean, scale = 1 / std
* ``identity`` -> offset 0, scale 1

Features whose range (or std) is below ``eps`` (a constant joint, an unused action dimension) get
scale 1 and offset equal to their value, so they map to 0 instead of dividing by ~0.
Because only ``offset``/``scale`` are needed, a checkpoint is loaded into
``Normalizer.empty(shapes)`` with ``load_state_dict`` without knowing the modes.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import ConfigError, DataError

MODES = ("minmax", "meanstd", "identity")


def buffer_name(key: str) -> str:
    """A reversible, injective encoding of ``key`` into a valid buffer name ('.' and '/' are not)."""
    return key.replace("_", "__").replace(".", "_d").replace("/", "_s")


def affine_stats(x: np.ndarray, mode: str, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """x: (N, *shape) samples -> (offset, scale), each of ``shape``, float32."""
    if mode not in MODES:
        raise ConfigError(f"Unknown normalisation mode {mode!r}; use one of {list(MODES)}.")
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] == 0:
        raise DataError("Cannot fit a normalizer on zero samples; record at least one episode first.")
    if not np.all(np.isfinite(x)):
        raise DataError("The data to fit the normalizer on contains NaN or infinite values; clean the dataset.")
    shape = x.shape[1:]
    if mode == "identity":
        return np.zeros(shape, np.float32), np.ones(shape, np.float32)
    if mode == "minmax":
        lo, hi = x.min(axis=0), x.max(axis=0)
        offset, spread = (hi + lo) / 2.0, (hi - lo) / 2.0
    else:
        offset, spread = x.mean(axis=0), x.std(axis=0)
    constant = spread < eps
    scale = np.where(constant, 1.0, 1.0 / np.where(constant, 1.0, spread))
    offset = np.where(constant, x[0], offset)
    return offset.astype(np.float32), scale.astype(np.float32)


class Normalizer(nn.Module):
    """Per-key affine normalisation; ``offset_<key>`` / ``scale_<key>`` buffers (key encoded)."""

    def __init__(self, stats: Mapping[str, tuple[np.ndarray, np.ndarray]], modes: Mapping[str, str] | None = None):
        super().__init__()
        self.keys: list[str] = list(stats)
        self.modes: dict[str, str] = dict(modes or {})  # informative only; offset/scale define the map
        for key, (offset, scale) in stats.items():
            self.register_buffer(f"offset_{buffer_name(key)}", torch.as_tensor(np.asarray(offset, np.float32)).clone())
            self.register_buffer(f"scale_{buffer_name(key)}", torch.as_tensor(np.asarray(scale, np.float32)).clone())

    @classmethod
    def fit(cls, data: Mapping[str, np.ndarray], modes: Mapping[str, str], eps: float = 1e-6) -> "Normalizer":
        """data: key -> (N, *shape) samples; modes: key -> "minmax" | "meanstd" | "identity"."""
        missing = [k for k in data if k not in modes]
        if missing:
            raise ConfigError(f"No normalisation mode given for key(s) {missing}; add them to the modes dict.")
        return cls({k: affine_stats(v, modes[k], eps) for k, v in data.items()}, {k: modes[k] for k in data})

    @classmethod
    def empty(cls, shapes: Mapping[str, Sequence[int]]) -> "Normalizer":
        """Identity normalizer with buffers of the given per-key shapes, ready for load_state_dict."""
        return cls({k: (np.zeros(tuple(s), np.float32), np.ones(tuple(s), np.float32)) for k, s in shapes.items()})

    @classmethod
    def empty_for_spec(cls, spec: EnvSpec, obs_keys: Sequence[str]) -> "Normalizer":
        """:meth:`empty` for the low-dim ``obs_keys`` of ``spec`` plus ``action`` (images are skipped)."""
        shapes: dict[str, Sequence[int]] = {k: spec.obs[k].shape for k in obs_keys if spec.obs[k].kind == "lowdim"}
        shapes["action"] = (spec.action_dim,)
        return cls.empty(shapes)

    def _params(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        # Looked up once per key (a per-chunk cost otherwise: name encoding and two module attribute walks);
        # the cache is dropped whenever the buffers are replaced (.to(), .cuda(), .half(): see _apply).
        cache = self.__dict__.setdefault("_param_cache", {})
        found = cache.get(key)
        if found is None:
            if key not in self.keys:
                raise DataError(f"The normalizer has no statistics for {key!r} (it has {self.keys}); fit it on data that contains that key.")
            name = buffer_name(key)
            found = cache[key] = (getattr(self, f"offset_{name}"), getattr(self, f"scale_{name}"))
        return found

    def _apply(self, fn, *args, **kwargs):
        self.__dict__["_param_cache"] = {}
        return super()._apply(fn, *args, **kwargs)

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """x: (..., *shape) raw units -> same shape, normalised (float32)."""
        offset, scale = self._params(key)
        return (x.to(offset.dtype) - offset) * scale

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """x: (..., *shape) normalised -> same shape, raw units (float32): offset + x / scale as one fused op."""
        offset, scale = self._params(key)
        return torch.addcdiv(offset, x.to(offset.dtype), scale)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}: {self.modes.get(k, '?')} {tuple(self._params(k)[0].shape)}" for k in self.keys)


def fit_normalizer(store, keys: Sequence[str], mode: str = "minmax", action_mode: str = "minmax", episodes: Sequence[int] | None = None) -> Normalizer:
    """Fit on the low-dim ``keys`` of an EpisodeStore (with ``mode``) and ``action`` (``action_mode``).

    episodes: restrict the statistics to these episode indices (e.g. the training split).
    """
    images = [k for k in keys if k in store.spec.obs and store.spec.obs[k].kind != "lowdim"]
    if images:
        raise ConfigError(f"Image key(s) {images} are not normalised by statistics (the image encoder scales them); leave them out of the normalizer keys.")
    if episodes is None:
        rows = None
    else:
        ranges = [store.episode_range(int(i)) for i in episodes]
        rows = np.concatenate([np.arange(a, b) for a, b in ranges]) if ranges else np.zeros(0, np.int64)
    modes = {k: mode for k in keys if k != "action"}
    modes["action"] = action_mode
    return Normalizer.fit({k: store.get(k, rows) for k in modes}, modes)
