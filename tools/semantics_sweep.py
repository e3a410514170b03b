"""Resumable sweep: strategies x seeds (x conditions) of the active-learning curve, one run at a time.

    nice -n 10 env OMP_NUM_THREADS=1 python tools/semantics_sweep.py --out runs/semsweep --seeds 0 1 2 \
        --strategies random_frames random_episodes diversity variance hybrid -- budget=50 per_round=10 train_schedule.steps=600
    # noise robustness: named conditions, each a list of extra overrides
    python tools/semantics_sweep.py --out runs/semnoise --seeds 0 1 2 --strategies variance --condition base \
        --condition annot_0.02 annotation_noise=0.02 --condition trans_0.005 transition_noise=0.005 -- budget=40

Each (condition, strategy, seed) is one ``mode=active`` run in ``<out>/<condition>/<strategy>/seed<k>``. Every
round writes its point to that run's ``<strategy>/state.json`` as soon as it is evaluated; a run whose
``results.json`` exists is skipped, and a stopped run continues after its last finished round. Offline
data, the true-semantics reference and the VAE latents are computed once per setting (``<out>/cache``).
Plot and summarise with ``tools/semantics_sweep_plot.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "disabled")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=["random_frames", "random_episodes", "diversity", "variance", "hybrid"])
    ap.add_argument("--condition", nargs="+", action="append", metavar=("NAME", "OVERRIDE"),
                    help="a named condition and its overrides (repeatable); default: one condition 'base' with none")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of conf/semantics.yaml for every run (after --)")
    args = ap.parse_args()
    conditions = [(c[0], c[1:]) for c in args.condition] if args.condition else [("base", [])]

    from hydra import compose, initialize_config_dir

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.errors import RobopolicyError
    from robopolicy.semantics.experiment import run_active_experiment

    out = Path(args.out)
    print(f"command: python tools/semantics_sweep.py {' '.join(sys.argv[1:])}", flush=True)
    for cond, extra in conditions:
        for seed in args.seeds:
            for strategy in args.strategies:
                run_dir = out / cond / strategy / f"seed{seed}"
                if (run_dir / "results.json").exists():
                    print(f"skip {run_dir} (done)", flush=True)
                    continue
                overrides = list(args.overrides) + list(extra) + [
                    f"run_dir={run_dir}", f"cache_dir={out / 'cache'}", f"seed={seed}", f"run_strategies=[{strategy}]"]
                with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                    cfg = compose("semantics", overrides=overrides)
                t0 = time.perf_counter()
                try:
                    run_active_experiment(cfg)
                except RobopolicyError as e:
                    print(f"error: {e}", file=sys.stderr)
                    sys.exit(2)
                print(f"done {run_dir} in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
