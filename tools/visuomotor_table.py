"""One markdown table row per run folder of tools/exp_visuomotor.sh (docs/results/visuomotor.md).

Reads each run's ``summary.json`` (steps, train time, validation loss) and its ``eval_standard.json`` /
``eval_fresh.json`` (success with the 95% Wilson interval the evaluation wrote, mean length of the
successful episodes, per-chunk latency p50 / p90 of the standard evaluation):

    python tools/visuomotor_table.py experiments/vm/door-open-v3_beso_flat_3000 experiments/vm/push-v3_beso_flat_3000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HEADER = ("| run | train steps | train time | standard [95% Wilson] | fresh positions [95% Wilson] "
          "| mean length of successes (standard / fresh) | latency p50 / p90 per chunk | val loss |")


def _success(ev: dict | None) -> str:
    if ev is None:
        return "not run"
    lo, hi = ev["ci95"]
    return f"**{ev['success_rate']:.2f}** [{lo:.2f}, {hi:.2f}]"


def _mean_success_length(ev: dict | None) -> str:
    if ev is None:
        return "—"
    lengths = [n for n, ok in zip(ev["episode_lengths"], ev["successes"]) if ok]
    return f"{sum(lengths) / len(lengths):.0f}" if lengths else "—"


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def row(run: Path) -> str:
    summary = _read(run / "summary.json")
    if summary is None:
        raise SystemExit(f"{run} has no summary.json; pass a finished training run folder.")
    std, fresh = _read(run / "eval_standard.json"), _read(run / "eval_fresh.json")
    lat = f"{std['latency_ms']['p50']:.0f} / {std['latency_ms']['p90']:.0f} ms" if std else "—"
    return (f"| `{run.name}` | {summary['steps']:,} | {summary['train_time_s']:.0f} s | {_success(std)} | {_success(fresh)} "
            f"| {_mean_success_length(std)} / {_mean_success_length(fresh)} | {lat} | {summary['val/loss']:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for run in args.runs:
        print(row(run))


if __name__ == "__main__":
    main()
