"""Resumable sweep: strategies x seeds (x conditions) of the active-learning curve, runs one at a time or side by side.

    python tools/semantics_sweep.py --out runs/semsweep --seeds 0 1 2 --jobs 2 \
        --strategies random_frames random_episodes diversity variance hybrid -- budget=50 per_round=10 train_schedule.steps=600
    # noise robustness: named conditions, each a list of extra overrides
    python tools/semantics_sweep.py --out runs/semnoise --seeds 0 1 2 --strategies variance --condition base \
        --condition annot_0.02 annotation_noise=0.02 --condition trans_0.005 transition_noise=0.005 -- budget=40
    # a preset of conf/experiment (Meta-World push): tools/semantics_metaworld_sweep.sh wraps this
    python tools/semantics_sweep.py --out runs/mwsweep --jobs 2 -- +experiment=semantics_metaworld_push

Each (condition, strategy, seed) is one ``mode=active`` run in ``<out>/<condition>/<strategy>/seed<k>``. Every
round writes its point to that run's ``<strategy>/state.json`` as soon as it is evaluated; a run whose
``results.json`` exists is skipped, and a stopped run continues after its last finished round. Every setting is
checked before anything runs (a bad one: one ``error:`` line, exit 2, nothing written). The offline data, the
true-semantics reference and the VAE latents are made once per condition and seed before the runs start
(``<out>/cache``), so runs side by side only read them. ``--jobs N`` runs N at a time as child processes with
``--threads`` torch threads each (default 1: on a 2-core machine, ``--jobs 2``); each writes its output to
``<run_dir>/sweep.log``, and a failed one is named with its log (exit 2 once the others end). ``--jobs 1`` (the
default) runs in this process, printing as it goes. Plot and summarise with ``tools/semantics_sweep_plot.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "disabled")


def _run_args(base: list[str], run_dir: Path, out: Path, seed: int, strategy: str) -> list[str]:
    return base + [f"run_dir={run_dir}", f"cache_dir={out / 'cache'}", f"seed={seed}", f"run_strategies=[{strategy}]"]


def _side_by_side(runs: list[tuple[Path, list[str]]], jobs: int, threads: int) -> list[Path]:
    """Run ``robopolicy-semantics`` for each (run_dir, overrides), at most ``jobs`` at once; the run dirs that failed."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    pending, active, failed = list(runs), [], []
    while pending or active:
        while pending and len(active) < jobs:
            run_dir, overrides = pending.pop(0)
            run_dir.mkdir(parents=True, exist_ok=True)
            log = open(run_dir / "sweep.log", "w")
            proc = subprocess.Popen([sys.executable, "-m", "robopolicy.cli.semantics", *overrides], stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
            active.append((proc, log, run_dir, time.perf_counter()))
            print(f"start {run_dir}", flush=True)
        time.sleep(1.0)
        for item in [a for a in active if a[0].poll() is not None]:
            proc, log, run_dir, t0 = item
            log.close()
            active.remove(item)
            if proc.returncode == 0:
                print(f"done {run_dir} in {time.perf_counter() - t0:.0f} s", flush=True)
            else:
                failed.append(run_dir)
                print(f"error: the run in {run_dir} failed (exit {proc.returncode}); its output is in {run_dir / 'sweep.log'}.",
                      file=sys.stderr, flush=True)
    return failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=["random_frames", "random_episodes", "diversity", "variance", "hybrid"])
    ap.add_argument("--condition", nargs="+", action="append", metavar=("NAME", "OVERRIDE"),
                    help="a named condition and its overrides (repeatable); default: one condition 'base' with none")
    ap.add_argument("--jobs", type=int, default=1, help="runs side by side (child processes); 1 = one at a time, here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run when --jobs > 1")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of conf/semantics.yaml for every run (after --)")
    args = ap.parse_args()
    if args.jobs < 1 or args.threads < 1:
        print(f"error: --jobs {args.jobs} / --threads {args.threads} must be at least 1.", file=sys.stderr)
        sys.exit(2)
    conditions = [(c[0], c[1:]) for c in args.condition] if args.condition else [("base", [])]

    from hydra import compose, initialize_config_dir

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.errors import RobopolicyError
    from robopolicy.semantics.experiment import check_active_setting, prepare_cache, run_active_experiment

    def compose_run(overrides: list[str]):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("semantics", overrides=overrides)

    out = Path(args.out)
    print(f"command: python tools/semantics_sweep.py {' '.join(sys.argv[1:])}", flush=True)
    todo = []  # (condition, seed, strategy, run_dir, overrides, cfg)
    try:
        for cond, extra in conditions:
            for seed in args.seeds:
                for strategy in args.strategies:
                    run_dir = out / cond / strategy / f"seed{seed}"
                    overrides = _run_args(list(args.overrides) + list(extra), run_dir, out, seed, strategy)
                    cfg = compose_run(overrides)
                    check_active_setting(cfg)  # every setting before any run
                    if (run_dir / "results.json").exists():
                        print(f"skip {run_dir} (done)", flush=True)
                        continue
                    todo.append((cond, seed, strategy, run_dir, overrides, cfg))
        groups: dict[tuple[str, int], list] = {}
        for t in todo:
            groups.setdefault((t[0], t[1]), []).append(t)
        for (cond, seed), group in groups.items():  # the shared data once per condition and seed, for all its strategies
            print(f"prepare the shared data of condition {cond}, seed {seed}", flush=True)
            names = ",".join(t[2] for t in group)
            prepare_cache(compose_run(group[0][4][:-1]  # run_strategies is _run_args' last override
                                       + [f"run_strategies=[{names}]"]))
        if args.jobs == 1:
            for *_, run_dir, _, cfg in todo:
                t0 = time.perf_counter()
                run_active_experiment(cfg)
                print(f"done {run_dir} in {time.perf_counter() - t0:.0f} s", flush=True)
            return
    except RobopolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    failed = _side_by_side([(t[3], t[4]) for t in todo], args.jobs, args.threads)
    if failed:
        sys.exit(2)


if __name__ == "__main__":
    main()
