"""Noise-robustness curve of a ``tools/semantics_noise_issue17.sh`` sweep: success at the budget against the noise level.

    python tools/semantics_noise_plot.py --sweep runs/semnoise --out docs/results/semantics_noise.png

Conditions are named as the sweep script names them: ``base`` (no noise), ``annot_<level>``
(``annotation_noise=<level>``) and ``trans_<level>`` (``transition_noise=<level>``); levels are
fractions of each semantic dimension's range (``--range`` gives it in metres for the cm axis). Reads
every finished run (``<condition>/<strategy>/seed<k>/<strategy>/state.json``; a run counts once its
last round has a transfer evaluation at the budget), so it also works on a sweep still running.
Figure: one panel per noise kind, each seed's success as a dot, the mean over seeds as a line
with a min-max band, ``base`` at level 0 in both, and the true-semantics success (dashed) with
90 % of it (dotted). Prints a Markdown table (one row per run) and writes it with the means to
``<out>.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from semantics_sweep_plot import load  # noqa: E402  (the sweep's reader: one place for the layout of a sweep)

KINDS = {"annot": "annotation noise", "trans": "transition noise (per simulated step)"}


def level_of(cond: str) -> tuple[list[str], float] | None:
    """(the noise kinds a condition belongs to, its level); ``base`` is level 0 of every kind; None: not a noise condition."""
    if cond == "base":
        return list(KINDS), 0.0
    kind, _, level = cond.partition("_")
    if kind in KINDS and level:
        return [kind], float(level)
    return None


def rows(points: dict, budget: int | None) -> list[dict]:
    """One row per (condition, strategy, seed) whose last evaluated round is at the budget (the largest count seen)."""
    out = []
    for cond, strategies in points.items():
        lv = level_of(cond)
        if lv is None:
            continue
        for name, per_seed in strategies.items():
            for seed, recs in sorted(per_seed.items()):
                if not recs or (budget is not None and int(recs[-1]["annotations"]) != budget):
                    continue
                r = recs[-1]
                out.append({"condition": cond, "kinds": lv[0], "level": lv[1], "strategy": name, "seed": seed,
                            "annotations": int(r["annotations"]), "labeled_frames": int(r["labeled_frames"]),
                            "success_rate": float(r["success_rate"]), "ci95": r["ci95"],
                            "label_error_m": r.get("label_error_m"), "offline_error_m": r.get("offline_error_m"),
                            "pusher_error_m": r.get("pusher_error_m"), "puck_error_m": r.get("puck_error_m")})
    return out


def _cm(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=int, default=None, help="count a run only at this many annotations (default: the largest seen)")
    ap.add_argument("--range", type=float, default=0.6, help="each semantic dimension's range in metres (planar push: 0.6)")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robopolicy.utils.plots import reference_lines, save_figure_with_summary

    points, reference = load(Path(args.sweep))
    if not points:
        raise SystemExit(f"error: no sweep runs (*/*/seed*/*/state.json) under {args.sweep}; run tools/semantics_sweep.py first.")
    seen = [int(r["annotations"]) for s in points.values() for p in s.values() for recs in p.values() for r in recs[-1:]]
    budget = args.budget if args.budget is not None else (max(seen) if seen else None)
    table = rows(points, budget)
    ref = next(iter(reference.values()), None)

    print(f"budget {budget} annotations; true-semantics success {ref['success_rate'] if ref else None}")
    print("| condition | level (fraction of range) | level (cm) | seed | labelled frames | success [95 % CI] "
          "| label error (cm) | held-out error (cm) | transfer error pusher / puck (cm) |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---|")
    for r in sorted(table, key=lambda r: (r["kinds"][0] if len(r["kinds"]) == 1 else "", r["level"], r["seed"])):
        lo, hi = r["ci95"]
        print(f"| {r['condition']} | {r['level']:g} | {100 * r['level'] * args.range:.2f} | {r['seed']} | {r['labeled_frames']} "
              f"| {r['success_rate']:.2f} [{lo:.2f}, {hi:.2f}] | {_cm(r['label_error_m'])} | {_cm(r['offline_error_m'])} "
              f"| {_cm(r['pusher_error_m'])} / {_cm(r['puck_error_m'])} |")

    summary: dict = {"budget": budget, "true_semantics_success": ref["success_rate"] if ref else None, "rows": table, "curves": {}}
    fig, axes = plt.subplots(1, len(KINDS), figsize=(6 * len(KINDS), 4.2), squeeze=False)
    for ax, (kind, title) in zip(axes[0], KINDS.items()):
        for name in sorted({r["strategy"] for r in table}):
            mine = [r for r in table if kind in r["kinds"] and r["strategy"] == name]
            levels = sorted({r["level"] for r in mine})
            succ = [[r["success_rate"] for r in mine if r["level"] == lv] for lv in levels]
            if not levels:
                continue
            mean = [float(np.mean(s)) for s in succ]
            lo_n, hi_n = min(map(len, succ)), max(map(len, succ))
            seeds = f"{lo_n} seed{'s' if hi_n > 1 else ''}" if lo_n == hi_n else f"{lo_n}-{hi_n} seeds"
            line = ax.plot(levels, mean, marker="o", label=f"{name} + aug. (mean, band min-max; {seeds} per level)")[0]
            ax.fill_between(levels, [min(s) for s in succ], [max(s) for s in succ], color=line.get_color(), alpha=0.15)
            for lv, s in zip(levels, succ):
                ax.scatter([lv] * len(s), s, color=line.get_color(), s=12, alpha=0.6)
            summary["curves"].setdefault(kind, {})[name] = {"levels": levels, "mean": mean, "per_seed": succ}
        if ref:
            reference_lines(ax, ref["success_rate"])
        ax.set(xlabel="std / range of each semantic dimension", ylabel=f"transferred success at {budget} annotations",
               ylim=(-0.02, 1.02), title=title)
        top = ax.secondary_xaxis("top", functions=(lambda x: 100 * args.range * x, lambda c: c / (100 * args.range)))
        top.set_xlabel("std (cm)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure_with_summary(fig, args.out, summary)


if __name__ == "__main__":
    main()
