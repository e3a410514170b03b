"""Noise levels of the noise-robustness study (Sato et al. 2023): a fraction of each semantic dimension's range.

``semantics.annotation_noise`` (the oracle's label noise) and ``semantics.transition_noise`` (the
simulated transitions of pair augmentation) are given as one fraction; each dimension's standard
deviation is that fraction times its range ``semantics_high - semantics_low`` (the task's bounds),
so one level means the same on a task whose dimensions have different units (Meta-World's
gripper opening next to positions in metres).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from robopolicy.errors import ConfigError


def range_std(fraction: float, low: Sequence[float], high: Sequence[float], key: str) -> np.ndarray:
    """(D,) float32 standard deviation ``fraction * (high - low)``; ``key`` names the setting in the error."""
    fraction = float(fraction)
    if not np.isfinite(fraction) or fraction < 0:
        raise ConfigError(f"{key}={fraction} is not a noise level; set {key} to 0 (no noise) or a positive fraction "
                          f"of each semantic dimension's range, e.g. {key}=0.05.")
    return (fraction * (np.asarray(high, np.float64) - np.asarray(low, np.float64))).astype(np.float32)


def check_std(std: float | Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    """``std`` as a float32 array (scalar or (D,)), refusing a negative or non-finite value with one sentence."""
    arr = np.asarray(std, np.float32)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ConfigError(f"The {what} standard deviation {arr.tolist()} must be finite and not negative; pass 0 for no noise.")
    return arr
