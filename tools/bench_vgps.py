"""Per-chunk latency of a base policy vs V-GPS re-ranking at K in {1, 4, 10, 32}.

    OMP_NUM_THREADS=2 python tools/bench_vgps.py [--net unet] [--steps 3] [--iters 30] [--device cpu] [--out bench.json]

Builds a default BESO policy (robopolicy.policies.build.build_policy, conf/policy/beso.yaml + conf/net/<net>.yaml)
and a default critic (conf/critic/iql.yaml sizes) for a Meta-World-sized spec (state 39, action 4, To=2, Tp=16)
with untrained weights: latency does not depend on the weights. One observation (B=1), as at deployment.
V-GPS reports 75 ms -> 96 ms (1.28x) at K=10 on a GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]


def build(net: str, steps: int, device: torch.device, hidden_dims: list[int] | None = None):
    from robopolicy.data.normalize import Normalizer
    from robopolicy.envs.spec import EnvSpec, ObsKeySpec
    from robopolicy.defaults import group_node
    from robopolicy.policies.build import build_policy
    from robopolicy.value.build import build_critic

    spec = EnvSpec(obs={"state": ObsKeySpec((39,))}, action_dim=4, action_low=(-1.0,) * 4, action_high=(1.0,) * 4,
                   max_episode_steps=200, name="bench")
    cfg = OmegaConf.create({"task": {"obs_horizon": 2, "action_horizon": 16, "exec_horizon": 8},
                            "policy": group_node("policy", "beso"),
                            "net": OmegaConf.load(REPO / f"conf/net/{net}.yaml"),
                            "critic": group_node("critic", "iql")})
    cfg.policy.sampler.steps = steps
    if hidden_dims:
        cfg.net.hidden_dims = list(hidden_dims)
    norm = lambda: Normalizer.empty_for_spec(spec, ["state"])  # noqa: E731
    policy = build_policy(cfg, spec, norm()).to(device).eval()
    critic = build_critic(cfg, spec, norm()).to(device).eval()
    return policy, critic


def time_interleaved(fns: dict, iters: int, device: torch.device) -> dict[str, list[float]]:
    """Time every fn once per round, rounds interleaved, so load drift on a shared machine hits all alike."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(iters + 3):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 3:  # warm-up rounds
                out[name].append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="unet", choices=["unet", "mlp", "transformer"])
    ap.add_argument("--steps", type=int, default=3, help="denoising steps of the BESO sampler")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 4, 10, 32])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--hidden-dims", type=int, nargs="+", default=None, help="override the denoiser's hidden_dims (mlp)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from robopolicy.utils import resolve_device
    from robopolicy.value.vgps import ValueGuidedPolicy

    device = resolve_device(args.device)
    torch.manual_seed(0)
    policy, critic = build(args.net, args.steps, device, args.hidden_dims)
    obs = {"state": torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (1, 2, 39)), dtype=torch.float32, device=device)}
    with torch.no_grad():
        fns = {"base": lambda: policy.sample(obs, 1)}
        for k in args.ks:
            vg = ValueGuidedPolicy(policy, critic, k=k)
            chunks = policy.sample(obs, k)
            fns[f"k{k}"] = lambda vg=vg: vg.sample(obs, 1)
            fns[f"score{k}"] = lambda chunks=chunks: critic.score(obs, chunks)
        t = time_interleaved(fns, args.iters, device)
        rows = {"base": {"p50_ms": statistics.median(t["base"]), "p90_ms": float(np.percentile(t["base"], 90))}}
        for k in args.ks:
            p50 = statistics.median(t[f"k{k}"])
            rows[f"k{k}"] = {"p50_ms": p50, "p90_ms": float(np.percentile(t[f"k{k}"], 90)),
                             "critic_p50_ms": statistics.median(t[f"score{k}"]), "overhead": p50 / rows["base"]["p50_ms"]}
    result = {"device": str(device), "threads": torch.get_num_threads(), "net": args.net, "hidden_dims": args.hidden_dims,
              "sampler_steps": args.steps,
              "iters": args.iters, "results": rows}
    print(f"device {device} ({torch.get_num_threads()} threads), BESO {args.net} {args.steps} steps, B=1, per chunk:")
    print(f"  base        p50 {rows['base']['p50_ms']:7.2f} ms  p90 {rows['base']['p90_ms']:7.2f} ms")
    for k in args.ks:
        r = rows[f"k{k}"]
        print(f"  V-GPS K={k:<3} p50 {r['p50_ms']:7.2f} ms  p90 {r['p90_ms']:7.2f} ms  critic {r['critic_p50_ms']:5.2f} ms  "
              f"overhead {r['overhead']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
