"""``robopolicy-report SWEEP_DIR``: aggregate every eval.json of a sweep into report.md/.csv/.png.

    robopolicy-report multirun/2025-01-01/12-00-00
    robopolicy-report SWEEP --group-by task.env_name policy.sampler.name --x policy.sampler.steps --out reports/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from robopolicy.cli._hydra import OneLineArgumentParser, report_errors
from robopolicy.evaluation import report as rep
from robopolicy.utils import atomic_write_text


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog="robopolicy-report", description=__doc__.split("\n")[0])
    p.add_argument("sweep_dir", help="folder written by robopolicy-eval --multirun (searched recursively for eval.json)")
    p.add_argument("--out", default=None, help="folder for report.md, report.csv, report.png (default: SWEEP_DIR)")
    p.add_argument("--group-by", nargs="+", default=None, metavar="KEY",
                   help="override keys that define a cell (default: every swept key except seed)")
    p.add_argument("--x", default=None, help="grouping key on the plot's x axis (default: a numeric one, e.g. policy.sampler.steps)")
    p.add_argument("--no-plot", action="store_true", help="skip report.png")
    return p


@report_errors
def run(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    jobs = rep.load_jobs(args.sweep_dir)
    group_by, rows = rep.aggregate(jobs, args.group_by)
    if args.x is not None and args.x not in group_by:  # checked before anything is written
        raise rep.DataError(f"--x {args.x!r} is not one of the grouping keys {group_by}; pick one of them or add it to --group-by.")
    out = Path(args.out or args.sweep_dir)
    md = rep.to_markdown(group_by, rows)
    atomic_write_text(out / "report.md", f"# Sweep report: {args.sweep_dir}\n\n{len(jobs)} evaluation jobs.\n\n" + md)
    atomic_write_text(out / "report.csv", rep.to_csv(group_by, rows))
    paths = [out / "report.md", out / "report.csv"]
    if not args.no_plot:
        paths.append(rep.plot(group_by, rows, out / "report.png", x=args.x))
    print(md, end="")
    print("wrote " + ", ".join(str(p) for p in paths))
    return {"group_by": group_by, "rows": rows, "paths": paths}


def main() -> None:
    run()


if __name__ == "__main__":
    main()
