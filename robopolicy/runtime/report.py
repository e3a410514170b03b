"""Timing report of a run: JSON figures and a plot.

Figures: period error (wake-up minus due time) p50/p99/p99.9/max in ms, deadline misses (action
sent later than ``deadline_frac`` of a period after the tick, or ticks skipped), stale actions
dropped and executed (executed must be 0), watchdog trips, safety interventions by kind,
inference latency percentiles, the policy server's added latency when one is used, episodes and
successes with a 95% Wilson interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from robopolicy.evaluation.stats import percentiles_ms, wilson_interval
from robopolicy.utils import atomic_write_json
from robopolicy.utils.plots import save_figure


def build_report(runner, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-able dict from a finished :class:`~robopolicy.runtime.runner.Runner`."""
    st = runner.stats
    lat = [latency for _, latency in runner.worker.latencies]
    succ = sum(1 for e in st.episodes if e["success"])
    n_ep = len(st.episodes)
    rep: dict[str, Any] = {
        "rate_hz": st.rate_hz,
        "ticks": len(st.tick_error_s),
        "duration_s": (st.tick_target_s[-1] - st.tick_target_s[0]) if len(st.tick_target_s) > 1 else 0.0,
        "period_error_ms": percentiles_ms(st.tick_error_s, (50, 99, 99.9)),
        "send_after_tick_ms": percentiles_ms(st.tick_sent_s, (50, 99)),
        "deadline_misses": st.deadline_misses,
        "overruns": st.overruns,
        "stale_actions_dropped": runner.buffer.stale_dropped,
        "stale_actions_executed": runner.buffer.stale_executed,
        "chunks": runner.buffer.chunks_added,
        "held_ticks": st.held,
        "starved_ticks": st.starved,
        "watchdog_trips": runner.watchdog.trips,
        "watchdog_stops": runner.watchdog.stops,
        "safety_interventions": dict(runner.safety.counts),
        "inference_latency_ms": percentiles_ms(lat, (50, 90, 99)),
        "inference_errors": st.inference_errors,
        "last_inference_error": st.last_inference_error,
        "episodes": n_ep,
        "successes": succ,
        "success_rate": succ / n_ep if n_ep else None,
        "ci95": list(wilson_interval(succ, n_ep)) if n_ep else None,
        "episode_results": st.episodes,
        "stop_reason": st.stop_reason,
        "merge": runner.cfg.merge,
        "rtc": runner.cfg.rtc,
    }
    trips = getattr(runner.worker.predictor, "round_trips", None)
    if trips:
        rt = np.asarray(trips)
        rep["server_round_trip_ms"] = percentiles_ms(rt[:, 0], (50, 90, 99))
        rep["server_added_latency_ms"] = percentiles_ms(rt[:, 0] - rt[:, 1], (50, 90, 99))
        rep["server_reconnects"] = getattr(runner.worker.predictor, "reconnects", 0)
    if extra:
        rep.update(extra)
    return rep


def write_report(runner, out_dir: str | Path, extra: dict | None = None, plot: bool = True) -> dict[str, Any]:
    """Write ``timing.json`` (and ``timing.png``) into ``out_dir``; returns the report."""
    out_dir = Path(out_dir)
    rep = build_report(runner, extra)
    atomic_write_json(out_dir / "timing.json", rep)
    if plot:
        save_plot(runner, out_dir / "timing.png")
    return rep


def save_plot(runner, path: str | Path) -> None:
    """Histogram of the period error and inference latency over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = runner.stats
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    err_ms = np.asarray(st.tick_error_s) * 1e3
    if err_ms.size:
        ax1.hist(err_ms, bins=100, log=True)
    ax1.set_xlabel("period error (ms, wake-up minus due time)")
    ax1.set_ylabel("ticks")
    ax1.set_title(f"{st.rate_hz:g} Hz loop, {err_ms.size} ticks")
    lat = np.asarray(runner.worker.latencies)
    if lat.size:
        t0 = st.tick_target_s[0] if st.tick_target_s else lat[0, 0]
        ax2.plot(lat[:, 0] - t0, lat[:, 1] * 1e3, ".", ms=2)
    ax2.axhline(1e3 / st.rate_hz, color="r", lw=0.8, label="control period")
    ax2.set_xlabel("time (s)")
    ax2.set_ylabel("inference latency (ms)")
    ax2.legend()
    save_figure(fig, path, dpi=100)
