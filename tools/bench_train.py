"""Training throughput of the one Trainer (steps/s, samples/s) for a policy/net config on synthetic data.

    python tools/bench_train.py                                   # beso + unet, batch 64 and 256, cpu (+cuda)
    python tools/bench_train.py --policy diffusion --net transformer --batch 64 --steps 30
    python tools/bench_train.py --override net.down_dims=[256,512,1024]

Each run trains ``--steps`` steps through ``Trainer.fit`` (AdamW, grad clipping, EMA, data loading
from an in-memory window dataset; no validation, rollouts or checkpoints other than the last) and
reports the rate over the second half of the steps, after warm-up. The spec mimics Meta-World state
tasks (obs 39, action 4) unless --obs-dim/--action-dim say otherwise.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.data import Normalizer
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.policies.build import build_policy
from robopolicy.training import Trainer
from robopolicy.training.config import trainer_config


class SyntheticWindows(torch.utils.data.Dataset):
    """Random windows shaped like WindowDataset items: {"obs": {"state": (To, D)}, "action": (Tp, A)}."""

    def __init__(self, n: int, obs_dim: int, action_dim: int, obs_horizon: int, action_horizon: int):
        g = torch.Generator().manual_seed(0)
        self.state = torch.randn(n, obs_horizon, obs_dim, generator=g)
        self.action = torch.rand(n, action_horizon, action_dim, generator=g) * 2 - 1

    def __len__(self):
        return len(self.state)

    def __getitem__(self, i):
        return {"obs": {"state": self.state[i]}, "action": self.action[i]}


def bench(policy: str, net: str, batch: int, steps: int, device: str, obs_dim: int, action_dim: int, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"policy={policy}", f"net={net}", "task=metaworld", "dataset=x", "run_dir=x", *overrides])
    spec = EnvSpec(obs={"state": ObsKeySpec((obs_dim,))}, action_dim=action_dim, action_low=(-1.0,) * action_dim,
                   action_high=(1.0,) * action_dim, max_episode_steps=200)
    torch.manual_seed(0)
    model = build_policy(cfg, spec, Normalizer.empty({"state": (obs_dim,), "action": (action_dim,)}))
    n_params = sum(p.numel() for p in model.parameters())
    data = SyntheticWindows(4096, obs_dim, action_dim, model.obs_horizon, model.action_horizon)
    half = max(steps // 2, 1)
    tcfg = {"steps": 2 * half, "batch_size": batch, "device": device, "log_every": half, "val_every": 0, "ckpt_every": 0,
            "progress": False, "wandb": {"mode": "disabled"}, "ema": {"enabled": True}}
    with tempfile.TemporaryDirectory() as run_dir:
        Trainer(model, data, trainer_config(tcfg), run_dir).fit()
        recs = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in recs if "train/steps_per_s" in r][-1]
    return {"policy": policy, "net": net, "device": device, "batch": batch, "params_M": n_params / 1e6,
            "steps_per_s": last["train/steps_per_s"], "samples_per_s": last["train/samples_per_s"],
            "ms_per_step": 1000.0 / last["train/steps_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", default="beso")
    ap.add_argument("--net", default="unet")
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--steps", type=int, default=20, help="steps per run; the rate is taken over the second half")
    ap.add_argument("--device", nargs="+", default=None, help="default: cpu, and cuda when present")
    ap.add_argument("--obs-dim", type=int, default=39)
    ap.add_argument("--action-dim", type=int, default=4)
    ap.add_argument("--override", nargs="*", default=[], help="extra config overrides, e.g. net.down_dims=[128,256,512]")
    args = ap.parse_args()
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'policy':<10} {'net':<12} {'device':<6} {'batch':>5} {'params(M)':>9} {'steps/s':>9} {'samples/s':>10} {'ms/step':>9}")
    for device in devices:
        for batch in args.batch:
            r = bench(args.policy, args.net, batch, args.steps, device, args.obs_dim, args.action_dim, args.override)
            print(f"{r['policy']:<10} {r['net']:<12} {r['device']:<6} {r['batch']:>5} {r['params_M']:>9.2f} "
                  f"{r['steps_per_s']:>9.2f} {r['samples_per_s']:>10.0f} {r['ms_per_step']:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
