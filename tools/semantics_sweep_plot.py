"""Curves of a ``tools/semantics_sweep.py`` run: mean over seeds with a band, and annotations to reach 90 %.

    python tools/semantics_sweep_plot.py --sweep runs/semsweep --out docs/results/semantics_curves.png
    python tools/semantics_sweep_plot.py --sweep runs/semnoise --noise --out docs/results/semantics_noise.png \
        --levels base=0 annot_0.01=0.01 ...     # x position of each condition (metres)

Reads every finished round (``<condition>/<strategy>/seed<k>/<strategy>/state.json``), so it also works on a sweep
still running. Prints, per condition and strategy, the success per annotation count (mean, min-max over seeds,
n seeds; each seed's points; then the seeds' episodes pooled, with a Wilson 95 % interval) and the annotation count at which each
seed first reaches 90 % of the true-semantics success (mean ± sd over the seeds that reach it, and how many do);
``--compare COND:STRATEGY:N COND:STRATEGY:N`` prints two points' pooled episodes and Fisher's exact p. Curve figure:
one panel per condition, the
mean success with a min-max band over seeds and the true-semantics reference. ``--noise``: success at
the largest annotation count against the condition's level, one line per strategy.

Several ``--sweep`` folders are read as one (a strategy or seed added in a later sweep); ``--sweep DIR=NAME`` shows a
sweep's runs as condition ``NAME`` instead (its own panel: the same strategies in another setting), and
``--sweep DIR[=NAME]@STRATEGY,...`` takes only those strategies' runs from it (a panel made of runs from several
sweeps, e.g. today's default setting, where one sweep also holds a strategy run in an older setting). The reference is a
finished run's (its results.json), else the first sweep's cache. ``--rescored RUN[=MAPPER_DIR]``: transfer runs of
the sweeps' mappers made later (``robopolicy-semantics mode=transfer mapper_dir=<sweep>/<cond>/<strategy>/seed<k>/
<strategy>/round_NN``, e.g. with more episodes) replace those points.

``--with-summary JSON``: the strategies of an earlier summary (the ``.json`` this tool writes beside its figure)
that the sweep does not hold are printed and drawn from it, marked "(summary)", so a sweep that adds strategies to
runs whose folders are gone still gives one figure. The summary keeps each seed's points (``per_seed``) since
2026-12-07; an older one has the mean, the min-max band, the pooled episodes and the first-reach counts only.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np


def parse_sweep(spec: str) -> tuple[Path, str | None, set[str] | None]:
    """``DIR[=NAME][@STRATEGY,...]`` -> (folder, condition name or None, strategies to take or None for all)."""
    spec, _, only = spec.partition("@")
    path, _, name = spec.partition("=")
    return Path(path), name or None, {s for s in only.split(",") if s} or None


def load(sweeps: list[Path], names: list[str | None] | None = None,
         only: list[set[str] | None] | None = None) -> tuple[dict, dict]:
    """-> points[cond][strategy][seed] = list of round records (each with its ``round`` index); reference[cond] = the
    true-semantics reference record: from a finished run's results.json, else from the first sweep's cache.
    ``names``: per sweep, the condition its runs are shown under (None: their condition folder's name).
    ``only``: per sweep, the strategies whose runs are taken (None: all); each must have a run there."""
    points: dict = {}
    reference: dict = {}
    for sweep, name, keep in zip(sweeps, names or [None] * len(sweeps), only or [None] * len(sweeps)):
        found = {st.parent.parent.parent.name for st in sweep.glob("*/*/seed*/*/state.json")}
        if keep and keep - found:
            raise SystemExit(f"error: --sweep {sweep}@...: no run of {', '.join(sorted(keep - found))} in {sweep} (it holds "
                             f"{', '.join(sorted(found)) or 'none'}); name strategies it ran.")
        for st in sorted(sweep.glob("*/*/seed*/*/state.json")):
            seed_dir = st.parent.parent
            cond, strategy = name or seed_dir.parent.parent.name, seed_dir.parent.name
            if keep and strategy not in keep:
                continue
            seed = int(seed_dir.name.removeprefix("seed"))
            if seed in points.get(cond, {}).get(strategy, {}):
                raise SystemExit(f"error: {cond}/{strategy}/seed{seed} is in more than one of the sweeps given (again in {sweep}); "
                                 "pass sweeps that hold different strategies or seeds.")
            recs = [{**r, "round": i} for i, r in enumerate(json.loads(st.read_text())["records"]) if "success_rate" in r]
            points.setdefault(cond, {}).setdefault(strategy, {})[seed] = recs
            results = seed_dir / "results.json"
            if cond not in reference and results.is_file():
                reference[cond] = json.loads(results.read_text())["reference_true_semantics"]
    for sweep in sweeps:
        for cache in sorted(sweep.glob("cache/*/reference*.json")):
            for cond in points:
                reference.setdefault(cond, json.loads(cache.read_text()))
    return points, reference


def apply_rescored(points: dict, items: list[str]) -> int:
    """Replace sweep points by later transfer evaluations of the same mappers (``robopolicy-semantics mode=transfer``,
    e.g. with more episodes). Each item is a transfer run folder or its transfer.json, optionally ``=MAPPER_DIR`` (the
    mapper it scored; transfer.json says it itself since 2026-12-07). The mapper folder names the point:
    ``<condition>/<strategy>/seed<k>/<strategy>/round_NN``. Returns how many points were replaced."""
    done = 0
    for item in items:
        path, _, mapper_dir = item.partition("=")
        f = Path(path) / "transfer.json" if Path(path).is_dir() else Path(path)
        try:
            data = json.loads(f.read_text())
            scored = data["mapper"]
        except (OSError, ValueError, KeyError, TypeError):
            raise SystemExit(f"error: --rescored {path}: {f} is not a transfer.json of robopolicy-semantics mode=transfer; "
                             "pass that run's folder.") from None
        mapper_dir = mapper_dir or data.get("mapper_dir")
        if not mapper_dir:
            raise SystemExit(f"error: --rescored {path}: {f} does not say which mapper it scored (written before transfer.json kept "
                             f"mapper_dir); pass it as {path}=<the mapper_dir of that run>.")
        # The sweep's layout: <condition>/<strategy>/seed<k>/<strategy>/round_NN (tools/semantics_sweep.py, active.py).
        m = re.fullmatch(r"(?P<cond>[^/]+)/(?P<st>[^/]+)/seed(?P<seed>\d+)/(?P=st)/round_(?P<round>\d+)",
                         "/".join(Path(mapper_dir).parts[-5:]))
        per_seed = points.get(m["cond"], {}).get(m["st"], {}).get(int(m["seed"]), []) if m else []
        recs = [r for r in per_seed if m and r["round"] == int(m["round"])]
        if not recs:
            raise SystemExit(f"error: --rescored {path} scored the mapper {mapper_dir}, which is no evaluated round "
                             "(<condition>/<strategy>/seed<k>/<strategy>/round_NN) of the sweeps given; pass its sweep with --sweep.")
        recs[0].update(success_rate=float(scored["success_rate"]), episodes=int(scored["episodes"]), rescored=str(f))
        done += 1
    return done


def _by_annotations(per_seed: dict) -> dict[int, list[dict]]:
    """seed -> records  ->  annotation count -> the seeds' records at it, in ascending count."""
    by_a: dict[int, list[dict]] = {}
    for recs in per_seed.values():
        for r in recs:
            by_a.setdefault(int(r["annotations"]), []).append(r)
    return dict(sorted(by_a.items()))


def curve(per_seed: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """per_seed: seed -> records -> annotations (K,), mean, min, max success (K,), seeds per point (K,)."""
    by_a = _by_annotations(per_seed)
    a = np.array(list(by_a))
    s = [np.array([float(r["success_rate"]) for r in recs]) for recs in by_a.values()]
    return a, np.array([x.mean() for x in s]), np.array([x.min() for x in s]), np.array([x.max() for x in s]), np.array([len(x) for x in s])


def pooled(per_seed: dict) -> dict[int, dict]:
    """annotations -> the seeds' episodes pooled (robopolicy.evaluation.stats.pooled_success: mean, std over seeds, Wilson
    95 % interval over all their episodes), over the records that say their episode count."""
    from robopolicy.evaluation.stats import pooled_success

    out = {}
    for a, recs in _by_annotations(per_seed).items():
        recs = [r for r in recs if "episodes" in r]
        if recs:
            k = [round(float(r["success_rate"]) * int(r["episodes"])) for r in recs]
            n = [int(r["episodes"]) for r in recs]
            out[a] = {**pooled_success(k, n), "successes": sum(k), "episodes": sum(n)}
    return out


def compare(summary: dict, a: str, b: str) -> str:
    """Two points ``COND:STRATEGY:ANNOTATIONS`` of the summary -> one line: their pooled episodes and Fisher's exact
    test (scipy, two-sided) of equal success rates."""
    from scipy.stats import fisher_exact

    counts = []
    for point in (a, b):
        cond, _, rest = point.partition(":")
        strategy, _, ann = rest.partition(":")
        pooled_at = summary.get(cond, {}).get(strategy, {}).get("pooled", {})
        if ann not in pooled_at:
            raise SystemExit(f"error: --compare {point}: no pooled point {strategy!r} at {ann!r} annotations in condition {cond!r}; "
                             "name it as COND:STRATEGY:ANNOTATIONS of the printed summary.")
        counts.append((int(pooled_at[ann]["successes"]), int(pooled_at[ann]["episodes"])))
    (ka, na), (kb, nb) = counts
    p = fisher_exact([[ka, na - ka], [kb, nb - kb]]).pvalue
    return f"{a} {ka}/{na} against {b} {kb}/{nb}: Fisher's exact p = {p:.2g}"


def first_reach(recs: list[dict], threshold: float) -> int | None:
    """The smallest annotation count whose success is at least ``threshold`` (None if none)."""
    hits = [int(r["annotations"]) for r in recs if float(r["success_rate"]) >= threshold]
    return min(hits) if hits else None


def entry(per_seed: dict, threshold: float | None) -> dict:
    """One strategy's summary: the curve (mean, min, max, seeds per point), the first count at ``threshold`` per seed,
    the seeds' episodes pooled, and each seed's points as (annotations, success, episodes)."""
    a, m, lo, hi, n = curve(per_seed)
    return {"annotations": a.tolist(), "mean": m.tolist(), "min": lo.tolist(), "max": hi.tolist(), "seeds": n.tolist(),
            "first_reach_90pct": [first_reach(recs, threshold) for recs in per_seed.values()] if threshold is not None else [],
            "pooled": {str(k): p for k, p in pooled(per_seed).items()},
            "per_seed": {str(k): [[int(r["annotations"]), float(r["success_rate"]), r.get("episodes")] for r in recs]
                         for k, recs in sorted(per_seed.items())}}


def _span(values) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


def legend_counts(e: dict) -> str:
    """'3 seeds x 50 ep.': the seeds per point and the transfer episodes per seed behind an entry's points."""
    eps = [int(ep) for pts in (e.get("per_seed") or {}).values() for _, _, ep in pts if ep]
    if not eps:  # a summary written before per_seed was kept: the pooled episodes over the seeds at each count
        seeds_at = dict(zip((str(a) for a in e["annotations"]), e["seeds"]))
        eps = [round(p["episodes"] / seeds_at[a]) for a, p in (e.get("pooled") or {}).items() if a in seeds_at]
    return f"{_span(e['seeds'])} seeds" + (f" x {_span(eps)} ep." if eps else "")


def load_summary(path: str) -> dict:
    """cond -> strategy -> entry, from a summary JSON this tool wrote (one clear error if it is not one)."""
    try:
        data = json.loads(Path(path).read_text())
        ok = all(isinstance(e, dict) and {"annotations", "mean", "min", "max", "seeds"} <= set(e)
                 for cond in data.values() for e in cond.values())
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise SystemExit(f"error: --with-summary {path} is not a summary this tool wrote (the .json beside a figure); pass that file.")
    return data


def print_entry(name: str, e: dict) -> None:
    """The entry's curve, each seed's points, the pooled episodes and the first count at 90 %."""
    row = " ".join(f"{k}:{mm:.2f}[{ll:.2f},{hh:.2f}]n{nn}" for k, mm, ll, hh, nn in zip(e["annotations"], e["mean"], e["min"], e["max"], e["seeds"]))
    seeds = " | ".join(f"seed {k} " + " ".join(f"{a}:{r:.2f}" for a, r, _ in pts) for k, pts in e.get("per_seed", {}).items())
    prow = " ".join(f"{k}:{p['successes']}/{p['episodes']}[{p['ci95_lo']:.2f},{p['ci95_hi']:.2f}]" for k, p in e.get("pooled", {}).items())
    reach = e.get("first_reach_90pct", [])
    got = [x for x in reach if x is not None]
    rs = (f"{np.mean(got):.1f} ± {np.std(got, ddof=1) if len(got) > 1 else 0:.1f} ({len(got)}/{len(reach)} seeds reach)"
          if got else f"not reached (0/{len(reach)} seeds)")
    print(f"  {name:16s} {row}\n  {'':16s} {seeds or 'per-seed points not kept in this summary'}\n"
          f"  {'':16s} pooled over seeds (Wilson 95 %): {prow}\n  {'':16s} first >= 90 %: {rs}; per seed {reach}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", required=True, nargs="+", metavar="SWEEP[=NAME][@STRATEGY,...]",
                    help="sweep folders (several: their runs together); =NAME shows that sweep's runs as condition NAME "
                         "(e.g. the same strategies under another setting, in a panel of their own); @STRATEGY,... takes "
                         "only those strategies' runs from it")
    ap.add_argument("--out", required=True)
    ap.add_argument("--noise", action="store_true")
    ap.add_argument("--levels", nargs="*", default=[], help="condition=level pairs for --noise")
    ap.add_argument("--xlabel", default="noise std (cm)")
    ap.add_argument("--title", default="", help="text before each panel's condition name (e.g. the task)")
    ap.add_argument("--with-summary", default=None, help="an earlier summary JSON: its strategies that the sweep lacks are added")
    ap.add_argument("--rescored", nargs="*", default=[], metavar="TRANSFER_RUN[=MAPPER_DIR]",
                    help="mode=transfer runs of the sweeps' mappers (e.g. more episodes): they replace those points")
    ap.add_argument("--compare", nargs=2, action="append", default=[], metavar=("COND:STRATEGY:N", "COND:STRATEGY:N"),
                    help="two points, seeds' episodes pooled: Fisher's exact test of equal success (repeatable)")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robopolicy.utils.plots import reference_lines, save_figure_with_summary

    sweeps = [parse_sweep(s) for s in args.sweep]
    points, reference = load(*(list(col) for col in zip(*sweeps)))
    if not points:
        raise SystemExit(f"error: no sweep runs (*/*/seed*/*/state.json) under {' '.join(args.sweep)}; run tools/semantics_sweep.py first.")
    if args.rescored:
        print(f"{apply_rescored(points, args.rescored)} points replaced by their --rescored evaluations")
    ref_rate = {cond: reference.get(cond, {}).get("success_rate") for cond in points}
    threshold = {cond: None if r is None else 0.9 * r for cond, r in ref_rate.items()}
    summary: dict = {}
    for cond, strategies in points.items():
        for name, per_seed in strategies.items():
            summary.setdefault(cond, {})[name] = entry(per_seed, threshold[cond])
    earlier = load_summary(args.with_summary) if args.with_summary else {}
    from_summary = {(c, n) for c in summary for n in earlier.get(c, {}) if n not in summary[c]}
    for cond, name in sorted(from_summary):
        summary[cond][name] = earlier[cond][name]
    for cond, entries in summary.items():
        print(f"== {cond}: true-semantics success {ref_rate[cond]}; 90 % of it = {threshold[cond]}")
        for name, e in entries.items():
            print_entry(name + (" (summary)" if (cond, name) in from_summary else ""), e)
    for a, b in args.compare:
        print(compare(summary, a, b))
    if args.noise:
        levels = dict(kv.split("=") for kv in args.levels)
        fig, ax = plt.subplots(figsize=(6, 4.2))
        names = sorted({n for s in points.values() for n in s})
        for name in names:
            xs, ms, los, his = [], [], [], []
            for cond in sorted(points, key=lambda c: float(levels.get(c, "nan"))):
                if name not in points[cond] or cond not in levels:
                    continue
                last = [recs[-1]["success_rate"] for recs in points[cond][name].values() if recs]
                if last:
                    xs.append(float(levels[cond]))
                    ms.append(np.mean(last))
                    los.append(np.min(last))
                    his.append(np.max(last))
            line = ax.plot(xs, ms, marker="o", label=name)[0]
            ax.fill_between(xs, los, his, color=line.get_color(), alpha=0.2)
        ax.set(xlabel=args.xlabel, ylabel="transferred success at the budget", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    else:
        conds = list(summary)
        fig, axes = plt.subplots(1, len(conds), figsize=(6 * len(conds), 4.2), squeeze=False)
        # One colour per strategy in every panel, so panels compare at a glance.
        names = sorted({n for entries in summary.values() for n in entries})
        colour = {n: f"C{i % 10}" for i, n in enumerate(names)}
        for ax, cond in zip(axes[0], conds):
            for name, e in sorted(summary[cond].items()):
                ax.plot(e["annotations"], e["mean"], marker="o", color=colour[name], label=f"{name} ({legend_counts(e)})")
                ax.fill_between(e["annotations"], e["min"], e["max"], color=colour[name], alpha=0.15)
            ref = reference.get(cond)
            if ref:
                reference_lines(ax, ref["success_rate"])
            ax.set(xlabel="annotations", ylabel="transferred success\n(mean; band: min-max over seeds)", ylim=(-0.02, 1.02),
                   title=f"{args.title} ({cond})" if args.title else cond)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    save_figure_with_summary(fig, args.out, summary)


if __name__ == "__main__":
    main()
