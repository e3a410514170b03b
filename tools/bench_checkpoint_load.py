"""Benchmark: what the checkpoint safety checks cost at load time.

    OMP_NUM_THREADS=1 python tools/bench_checkpoint_load.py               # BESO + the default U-Net, push-v3 spec
    python tools/bench_checkpoint_load.py --net mlp --repeats 5

Writes one checkpoint of a freshly initialised policy (the default ``conf/net`` sizes) into a
temporary run and reports, as the median over ``--repeats``:
  weights_mb        size of model.safetensors
  sha256_ms         hashing model.safetensors (the checksum check)
  finite_ms         the NaN/inf scan over every tensor
  targets_ms        resolving config.yaml and checking every _target_ against the allowlist
  load_run_ms       the whole robopolicy.api.load_run (find, check, build, verify, load) on CPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402


def make_run(run_dir: Path, net: str) -> None:
    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.data.normalize import Normalizer
    from robopolicy.defaults import group_node
    from robopolicy.envs import make_task
    from robopolicy.policies.build import build_policy
    from robopolicy.training.checkpoint import set_latest, state_dict_for_safetensors, write_checkpoint

    cfg = OmegaConf.create({"task": OmegaConf.load(CONF_DIR / "task" / "metaworld.yaml"),
                            "policy": group_node("policy", "beso"),
                            "net": OmegaConf.load(CONF_DIR / "net" / f"{net}.yaml")})
    OmegaConf.resolve(cfg)
    spec = make_task(cfg.task).spec
    normalizer = Normalizer.empty_for_spec(spec, ["state"])
    torch.manual_seed(0)
    policy = build_policy(cfg, spec, normalizer)
    root = run_dir / "checkpoints"
    write_checkpoint(root, 1, {"model.safetensors": state_dict_for_safetensors(policy), "config.yaml": OmegaConf.to_yaml(cfg),
                               "spec.json": spec.to_dict(), "meta.json": {"step": 1, "metrics": {}, "ema": False}})
    set_latest(root, 1)


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", default="unet", help="conf/net/<name>.yaml")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from safetensors.torch import load_file

    from robopolicy.api import load_run
    from robopolicy.training.checkpoint import check_finite, file_sha256
    from robopolicy.utils.safe_instantiate import check_targets

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        make_run(run, args.net)
        weights = run / "checkpoints" / "step_1" / "model.safetensors"
        state = load_file(str(weights))
        cfg = OmegaConf.load(weights.parent / "config.yaml")
        load_run(run, device="cpu")  # warm-up: imports
        rows = {
            "weights_mb": weights.stat().st_size / 1e6,
            "sha256_ms": median_ms(lambda: file_sha256(weights), args.repeats),
            "finite_ms": median_ms(lambda: check_finite(state, weights), args.repeats),
            "targets_ms": median_ms(lambda: check_targets(cfg), args.repeats),
            "load_run_ms": median_ms(lambda: load_run(run, device="cpu"), args.repeats),
        }
    print(f"net={args.net} repeats={args.repeats} torch_threads=1")
    for k, v in rows.items():
        print(f"{k:<12} {v:10.2f}")


if __name__ == "__main__":
    main()
