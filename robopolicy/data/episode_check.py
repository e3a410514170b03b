"""Checks of one episode against the arrays of a store: keys, lengths, shapes, dtypes, finiteness."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import DataError

STEP_KEYS = ("action", "reward", "success", "done")


def expected_arrays(spec: EnvSpec) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """key -> (per-step shape, dtype) of every array an episode of ``spec`` must have."""
    out = {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in spec.obs.items()}
    out["action"] = ((spec.action_dim,), np.dtype("float32"))
    out["reward"] = ((), np.dtype("float32"))
    out["success"] = ((), np.dtype("bool"))
    out["done"] = ((), np.dtype("bool"))
    return out


def validate_episode(episode: Mapping[str, Any], expected: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> dict[str, np.ndarray]:
    """Check an episode dict against ``expected`` and return it as arrays cast to the stored dtypes.

    episode: key -> (T, *shape) for every expected key. Raises DataError naming the first problem.
    """
    missing = [k for k in expected if k not in episode]
    if missing:
        raise DataError(f"The episode lacks key(s) {missing} that the store needs; include every key of {sorted(expected)}.")
    extra = sorted(set(episode) - set(expected))
    if extra:
        raise DataError(f"The episode has key(s) {extra} that the store does not hold; drop them or add them to the env spec.")
    arrays = {k: np.asarray(episode[k]) for k in expected}
    lengths = {k: (a.shape[0] if a.ndim else 0) for k, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"The episode's arrays have different lengths {lengths}; every key needs one row per step.")
    if next(iter(lengths.values())) < 1:
        raise DataError("The episode has no steps; append episodes with at least one step.")
    out = {}
    for k, a in arrays.items():
        shape, dtype = expected[k]
        if tuple(a.shape[1:]) != shape:
            raise DataError(f"Episode key {k!r} has per-step shape {tuple(a.shape[1:])} but the store expects {shape}; fix the recorder or the env spec.")
        if dtype == np.uint8 and a.dtype != np.uint8:
            raise DataError(f"Episode key {k!r} has dtype {a.dtype} but images are stored as uint8; convert it with .astype(np.uint8).")
        if dtype.kind == "f" and not np.issubdtype(a.dtype, np.number) and a.dtype != np.bool_:
            raise DataError(f"Episode key {k!r} has dtype {a.dtype}, not numbers; record float values.")
        if a.dtype.kind in "fc":
            _check_finite(k, a, "")  # NaN cast to bool or int would pass unnoticed
        with np.errstate(over="ignore", invalid="ignore"):
            cast = a.astype(dtype, copy=False)
        if dtype.kind == "f":
            _check_finite(k, cast, f" after casting to the stored {dtype}")  # float64 1e39 -> float32 inf
        out[k] = cast
    return out


def _check_finite(key: str, a: np.ndarray, when: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        step = int(np.argwhere(bad)[0][0])
        raise DataError(f"Episode key {key!r} is NaN or infinite at step {step}{when}; fix the recorder (or scale the values) or drop this episode.")
