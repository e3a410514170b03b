"""Transferred success and semantics error against annotations for the five acquisition strategies.

    OMP_NUM_THREADS=1 python tools/semantics_experiment.py --quick          # tiny scale, checks the pipeline
    python tools/semantics_experiment.py --out runs/sem_full               # full scale: budget 50, 50 episodes/point
    python tools/semantics_experiment.py --out runs/sem_x budget=30 segment_length=10   # extra Hydra overrides
    python tools/semantics_experiment.py --out runs/sem_all --merge runs/sem_a runs/sem_b  # one table + figure from
                                                      # several runs (e.g. one process per strategy, each saved on its own)

Writes <out>/results.json and <out>/curves.png and prints one table row per round with wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "disabled")

QUICK = ["budget=4", "per_round=2", "segment_length=10", "data.episodes=6", "data.test_episodes=2", "transfer.episodes=3",
         "task.max_episode_steps=60", "mapper.members=2", "mapper.hidden_dim=32", "mapper.encoder.channels=8",
         "mapper.encoder.num_kp=8", "train_schedule.steps=30", "vae_trainer.steps=30",
         "real_env.image_size=32", "trainer.batch_size=16", "vae_trainer.batch_size=16"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny scale: checks the pipeline in about a minute on CPU")
    ap.add_argument("--out", default="runs/semantics_experiment")
    ap.add_argument("--merge", nargs="+", metavar="RUN_DIR", help="merge the results.json of these runs into --out (no training)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of conf/semantics.yaml")
    args = ap.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return

    from hydra import compose, initialize_config_dir

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.errors import RobopolicyError
    from robopolicy.semantics.experiment import run_active_experiment

    overrides = (QUICK if args.quick else []) + [f"run_dir={args.out}"] + list(args.overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics", overrides=overrides)
    t0 = time.perf_counter()
    try:
        res = run_active_experiment(cfg)
    except RobopolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"\ncommand: python tools/semantics_experiment.py {' '.join(sys.argv[1:])}")
    print_table(res)
    print(f"wall time {time.perf_counter() - t0:.0f} s; wrote {args.out}/results.json and {args.out}/curves.png")


def print_table(res: dict) -> None:
    ref = res["reference_true_semantics"]
    print(f"controller on true semantics in the real env: {ref['success_rate']:.2f} "
          f"[{ref['ci95'][0]:.2f}, {ref['ci95'][1]:.2f}] ({ref['episodes']} episodes)")
    print(f"{'strategy':16s} {'annot':>5s} {'frames':>6s} {'err_cm':>7s} {'label_err_cm':>12s} {'success':>7s} {'ci95':>13s} {'act_err':>7s} {'tr_err_cm':>9s}")
    for name, rounds in res["curves"].items():
        for r in rounds:
            ci = r.get("ci95", [float("nan")] * 2)
            print(f"{name:16s} {r['annotations']:5d} {r['labeled_frames']:6d} {100 * r['offline_error_m']:7.2f} "
                  f"{100 * r['label_error_m']:12.3f} {r.get('success_rate', float('nan')):7.2f} [{ci[0]:.2f}, {ci[1]:.2f}] "
                  f"{r.get('action_error', float('nan')):7.3f} {100 * r.get('semantics_error_m', float('nan')):9.2f}")


def merge(run_dirs: list[str], out: str) -> None:
    """Curves of several runs (same reference, e.g. one strategy per process) -> <out>/results.json + curves.png."""
    import json
    from pathlib import Path

    from robopolicy.semantics.plots import plot_curves
    from robopolicy.utils import atomic_write_json

    runs = [json.loads((Path(d) / "results.json").read_text()) for d in run_dirs]
    ref = runs[0]["reference_true_semantics"]
    for d, r in zip(run_dirs, runs):
        if r["reference_true_semantics"]["successes"] != ref["successes"]:
            print(f"warning: {d} has another reference (true-semantics) outcome than {run_dirs[0]}", file=sys.stderr)
    order = ["random_frames", "random_episodes", "diversity", "variance", "hybrid"]
    curves: dict[str, list] = {}
    for d, r in zip(run_dirs, runs):
        for k, v in r["curves"].items():
            curves[k if k not in curves else f"{k} ({Path(d).name})"] = v
    curves = {k: curves[k] for k in sorted(curves, key=lambda k: (order.index(k) if k in order else len(order), k))}
    res = {"reference_true_semantics": ref, "curves": curves, "budget": runs[0]["budget"], "merged_from": list(run_dirs),
           "offline_frames": runs[0]["offline_frames"], "config": runs[0]["config"]}
    atomic_write_json(Path(out) / "results.json", res)
    c = runs[0]["config"]
    plot_curves({n: [x for x in rs if "success_rate" in x] for n, rs in curves.items()}, Path(out) / "curves.png", ref,
                title=f"planar push, {c['transfer']['episodes']} episodes/point, segment {c['segment_length']}")
    print(f"merged {len(runs)} runs")
    print_table(res)
    print(f"wrote {out}/results.json and {out}/curves.png")


if __name__ == "__main__":
    main()
