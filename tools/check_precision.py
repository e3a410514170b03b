"""Does ``precision=bf16`` (CPU autocast) change what the trainer learns? Loss curves of short runs, fp32 vs bf16.

A tiny bimodal task: state s ~ N(0, I_39); the action chunk (16 × 4) is +g(s) or −g(s) with equal probability
(g a fixed random smooth map), so the policy must keep two modes. BESO on the quick-start U-Net (32/64/128) is
trained by the one Trainer for ``--steps`` steps at batch 64 with each precision and ``--seeds`` seeds; the table
gives the mean training loss per window of steps. The seed-to-seed spread at fp32 is the noise the bf16 curve is
judged against. The validation loss (fp32, fixed noise, held-out windows) is printed at the end.

    python tools/check_precision.py [--steps 300] [--seeds 0 1] [--net quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import ACT, NETS, OBS, TO, TP, build  # noqa: E402

from robopolicy.training import Trainer  # noqa: E402


class Bimodal(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(1234)  # the task (g) is the same for every run
        w1, w2 = torch.randn(OBS, 64, generator=g) / OBS**0.5, torch.randn(64, TP * ACT, generator=g) / 8.0
        d = torch.Generator().manual_seed(seed)
        self.state = torch.randn(n, TO, OBS, generator=d)
        sign = torch.where(torch.rand(n, generator=d) < 0.5, -1.0, 1.0)
        self.action = (sign[:, None] * torch.tanh(torch.tanh(self.state[:, -1] @ w1) @ w2)).view(n, TP, ACT)

    def __len__(self):
        return len(self.state)

    def __getitem__(self, i):
        return {"obs": {"state": self.state[i]}, "action": self.action[i]}


def run(precision: str, seed: int, steps: int, net: str, window: int) -> dict:
    torch.manual_seed(seed)
    model = build("beso", NETS[net]).train()
    cfg = {"steps": steps, "batch_size": 64, "device": "cpu", "log_every": window, "val_every": steps, "ckpt_every": 0, "seed": seed,
           "progress": False, "wandb": {"mode": "disabled"}, "ema": {"enabled": True}, "precision": precision,
           "optim": {"lr": 1e-3, "warmup_steps": 20}}
    val = torch.utils.data.DataLoader(Bimodal(256, 999), batch_size=128)
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        Trainer(model, Bimodal(4096, seed), cfg, run_dir, val_loader=val).fit()
        wall = time.perf_counter() - t0
        recs = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in recs if "train/loss" in r]
    val_loss = [r["val/loss"] for r in recs if "val/loss" in r][-1]
    ms = statistics.median(1000.0 / r["train/steps_per_s"] for r in recs if "train/steps_per_s" in r)
    return {"losses": losses, "val_loss": val_loss, "ms_per_step": ms, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--net", default="quick", choices=list(NETS))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    res = {}
    for seed in args.seeds:  # precisions alternated per seed, so machine load hits both alike
        for p in ("fp32", "bf16"):
            res[f"{p} seed {seed}"] = run(p, seed, args.steps, args.net, args.window)
    print(f"mean training loss per {args.window} steps (BESO, {args.net} U-Net, batch 64):")
    for k, r in res.items():
        print(f"{k:<14} " + " ".join(f"{v:.4f}" for v in r["losses"]) + f"   val {r['val_loss']:.4f}   {r['ms_per_step']:.1f} ms/step")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
