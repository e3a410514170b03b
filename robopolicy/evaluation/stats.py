"""Success-rate statistics: the Wilson score interval (scipy's) and pooling over evaluation jobs."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    Unlike the normal ("Wald") interval it stays inside [0, 1] and does not collapse to a point at
    0/n or n/n. ``z`` = 1.96 gives the 95% interval. Returns ``(0.0, 1.0)`` when ``n`` is 0.
    """
    successes, n = int(successes), int(n)
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n, got successes={successes}, n={n}.")
    if n == 0:
        return 0.0, 1.0
    confidence = 2.0 * stats.norm.cdf(z) - 1.0
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def pooled_success(successes: Sequence[int], episodes: Sequence[int], z: float = 1.96) -> dict[str, float]:
    """Pool several evaluation jobs of one cell.

    successes, episodes: per job. Returns the mean of the per-job success rates, their standard
    deviation across jobs (sample std, 0 for one job), and the Wilson interval over all episodes
    pooled together.
    """
    if len(successes) != len(episodes) or not episodes:
        raise ValueError("pooled_success needs one success count per job and at least one job.")
    rates = [s / e if e else 0.0 for s, e in zip(successes, episodes)]
    mean = sum(rates) / len(rates)
    std = math.sqrt(sum((r - mean) ** 2 for r in rates) / (len(rates) - 1)) if len(rates) > 1 else 0.0
    lo, hi = wilson_interval(sum(successes), sum(episodes), z)
    return {"mean": mean, "std": std, "ci95_lo": lo, "ci95_hi": hi, "pooled_rate": sum(successes) / max(1, sum(episodes))}


def percentiles_ms(values_s, qs=(50, 99, 99.9)) -> dict[str, float | None]:
    """Durations in seconds -> {"p50": .., "p99": .., "p99.9": .., "max": .., "mean": .., "n": ..} in ms (None when empty)."""
    v = np.asarray(values_s, dtype=np.float64) * 1e3
    keys = [f"p{q:g}" for q in qs] + ["max", "mean"]
    if v.size == 0:
        return {**{k: None for k in keys}, "n": 0}
    out = {f"p{q:g}": float(np.percentile(v, q)) for q in qs}
    out["max"] = float(v.max())
    out["mean"] = float(v.mean())
    out["n"] = int(v.size)
    return out
