"""Aggregate a sweep of ``eval.json`` files into one table (Markdown, CSV) and a plot.

Each job of ``robopolicy-eval --multirun`` writes ``eval.json`` (with the job's command-line
overrides) into its own folder. Jobs are grouped by the swept keys (the override keys whose value
differs between jobs), ``seed`` excluded unless asked for, and each cell reports:

* ``success_mean``: mean of the per-job success rates, ``success_std``: their standard deviation
  across jobs (seeds), ``n_jobs`` and the pooled ``episodes``;
* ``ci95_lo``/``ci95_hi``: the Wilson interval over all episodes of the cell pooled together;
* when the evaluated runs have a training ``summary.json``: the maximum over training-time
  evaluations, the mean of the last 10 and the final fixed-episode score, always all three
  (the maximum alone overstates a policy).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from robopolicy.errors import DataError
from robopolicy.evaluation.stats import pooled_success
from robopolicy.utils.plots import save_figure

TRAIN_COLUMNS = ("train_eval_max", "train_eval_last10_mean", "train_final_score")
# summary.json names: the ones in the issue and the ones the trainer writes.
_TRAIN_KEYS = {
    "train_eval_max": ("eval_max", "eval/success_rate_max"),
    "train_eval_last10_mean": ("eval_last10_mean", "eval/success_rate_last10_mean"),
    "train_final_score": ("final_score", "final.success_rate"),
}


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """Hydra override strings (``a.b=1``, ``+x=2``, ``++y=3``) -> {key: value}; deletions are skipped."""
    out = {}
    for o in overrides:
        o = str(o)
        if o.startswith("~") or "=" not in o:
            continue
        k, v = o.lstrip("+").split("=", 1)
        out[k] = v
    return out


def _dig(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def load_jobs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Every ``eval.json`` under ``sweep_dir`` as {"path", "overrides", "result", "train"}."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise DataError(f"Sweep folder {str(sweep_dir)!r} does not exist; pass the folder a robopolicy-eval --multirun wrote.")
    jobs = []
    for path in sorted(sweep_dir.rglob("eval.json")):
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{str(path)!r} is not valid JSON ({e}); delete it or re-run that job.") from None
        if not all(k in result for k in ("success_rate", "episodes")):
            raise DataError(f"{str(path)!r} has no success_rate/episodes; it was not written by robopolicy-eval.")
        overrides = result.get("overrides")
        hydra_file = path.parent / ".hydra" / "overrides.yaml"
        if overrides is None and hydra_file.is_file():
            import yaml

            overrides = yaml.safe_load(hydra_file.read_text()) or []
        jobs.append({"path": str(path), "overrides": parse_overrides(overrides or []), "result": result,
                     "train": _training_summary(result)})
    if not jobs:
        raise DataError(f"No eval.json under {str(sweep_dir)!r}; run robopolicy-eval --multirun with sweep_dir={sweep_dir} first.")
    return jobs


def _training_summary(result: dict) -> dict[str, float] | None:
    run_dir = result.get("run_dir")
    path = Path(run_dir) / "summary.json" if run_dir else None
    if path is None or not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    out = {}
    for col, names in _TRAIN_KEYS.items():
        vals = [summary.get(n, _dig(summary, n)) for n in names]
        vals = [v for v in vals if isinstance(v, (int, float))]
        if vals:
            out[col] = float(vals[0])
    return out or None


def job_value(job: dict, key: str) -> str:
    """The value of ``key`` for a job: its override, else the matching field of eval.json, else ``default``."""
    if key in job["overrides"]:
        return job["overrides"][key]
    r = job["result"]
    # eval.json stores the sampler settings under "sampler", the task and steer sections by name.
    for candidate in (key, key.replace("policy.sampler.", "sampler.", 1)):
        v = _dig(r, candidate)
        if v is not None and not isinstance(v, (dict, list)):
            return str(v)
    return "default"


def swept_keys(jobs: Sequence[dict]) -> list[str]:
    """Override keys whose value is not the same in every job, in first-seen order."""
    keys: list[str] = []
    for j in jobs:
        keys += [k for k in j["overrides"] if k not in keys]
    return [k for k in keys if len({job_value(j, k) for j in jobs}) > 1]


def _sort_key(values: Sequence[str]) -> tuple:
    def one(v):
        try:
            return (0, float(v), "")
        except ValueError:
            return (1, 0.0, v)

    return tuple(one(v) for v in values)


def aggregate(jobs: Sequence[dict], group_by: Sequence[str] | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """Group jobs and summarise each cell. Returns (group keys, rows sorted by group values)."""
    if group_by is None:
        group_by = [k for k in swept_keys(jobs) if k != "seed"]
    group_by = list(group_by)
    cells: dict[tuple, list[dict]] = {}
    for j in jobs:
        cells.setdefault(tuple(job_value(j, k) for k in group_by), []).append(j)
    rows = []
    for values in sorted(cells, key=_sort_key):
        members = cells[values]
        eps = [int(j["result"]["episodes"]) for j in members]
        succ = [int(round(float(j["result"]["success_rate"]) * e)) for j, e in zip(members, eps)]
        pooled = pooled_success(succ, eps)
        row: dict[str, Any] = dict(zip(group_by, values))
        row.update({"success_mean": pooled["mean"], "success_std": pooled["std"], "ci95_lo": pooled["ci95_lo"],
                    "ci95_hi": pooled["ci95_hi"], "n_jobs": len(members), "episodes": sum(eps), "successes": sum(succ)})
        trains = [j["train"] for j in members if j["train"]]
        for col in TRAIN_COLUMNS:
            vals = [t[col] for t in trains if col in t]
            row[col] = sum(vals) / len(vals) if vals else None
        rows.append(row)
    return group_by, rows


def table_columns(group_by: Sequence[str], rows: Sequence[dict]) -> list[str]:
    cols = list(group_by) + ["success_mean", "success_std", "ci95_lo", "ci95_hi", "n_jobs", "episodes"]
    # Training figures: all three or none, so the maximum never appears alone.
    if any(r.get(c) is not None for r in rows for c in TRAIN_COLUMNS):
        cols += list(TRAIN_COLUMNS)
    return cols


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def to_markdown(group_by: Sequence[str], rows: Sequence[dict]) -> str:
    cols = table_columns(group_by, rows)
    head = [c for c in cols if c not in ("ci95_lo", "ci95_hi")]
    head.insert(len(group_by) + 2, "95% CI (Wilson, pooled)")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < len(group_by) else "---:" for i in range(len(head))) + "|"]
    for r in rows:
        cells = [_fmt(r[c]) for c in cols if c not in ("ci95_lo", "ci95_hi")]
        cells.insert(len(group_by) + 2, f"[{r['ci95_lo']:.3f}, {r['ci95_hi']:.3f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(group_by: Sequence[str], rows: Sequence[dict]) -> str:
    cols = table_columns(group_by, rows) + ["successes"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r[c]) for c in cols})
    return buf.getvalue()


def _is_number(v: str) -> bool:
    try:
        return math.isfinite(float(v))
    except ValueError:
        return False


def choose_x(group_by: Sequence[str], rows: Sequence[dict]) -> str | None:
    """Default plot axis: a numeric group key, preferring one about sampler steps."""
    numeric = [k for k in group_by if all(_is_number(str(r[k])) for r in rows)]
    for k in numeric:
        if "steps" in k:
            return k
    return numeric[0] if numeric else (group_by[0] if group_by else None)


def plot(group_by: Sequence[str], rows: Sequence[dict], path: str | Path, x: str | None = None) -> Path:
    """Success (mean over jobs) against ``x`` with pooled Wilson interval bars, one line per other group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = x or choose_x(group_by, rows)
    if x is not None and x not in group_by:
        raise DataError(f"--x {x!r} is not one of the grouping keys {list(group_by)}; pick one of them or add it to --group-by.")
    others = [k for k in group_by if k != x]
    numeric = x is not None and all(_is_number(str(r[x])) for r in rows)
    cats = sorted({str(r[x]) for r in rows}, key=lambda v: _sort_key([v])) if x and not numeric else []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    lines: dict[tuple, list[dict]] = {}
    for r in rows:
        lines.setdefault(tuple(r[k] for k in others), []).append(r)
    for i, (label, members) in enumerate(lines.items()):
        members = sorted(members, key=lambda r: _sort_key([str(r[x])]) if x else ())
        # Categorical x: shift each line a little so interval bars do not hide each other.
        shift = 0.0 if numeric else 0.06 * (i - (len(lines) - 1) / 2)
        xs = [float(r[x]) if numeric else (cats.index(str(r[x])) if x else 0) + shift for r in members]
        ys = [r["success_mean"] for r in members]
        err = [[max(0.0, y - r["ci95_lo"]) for y, r in zip(ys, members)], [max(0.0, r["ci95_hi"] - y) for y, r in zip(ys, members)]]
        name = ", ".join(f"{k}={v}" for k, v in zip(others, label)) or "all"
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name)
    if cats:
        ax.set_xticks(range(len(cats)), cats, rotation=20)
    ax.set_xlabel(x or "")
    ax.set_ylabel("success rate (95% Wilson interval, pooled)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
