"""Latency per action chunk on this machine: Diffusion Policy samplers vs BESO at 1/3/10 steps.

For each sampler and batch size it reports the median wall time of ``policy.sample(obs, n=1)``
(observation preprocessing, encoding, the denoising loop, un-normalisation), the median time of
one bare network forward at the same batch × the number of network evaluations, and the share of
the total spent outside the network (target: ≤ 10% at 3 steps). Untrained weights: latency does
not depend on training.

    python tools/bench_latency.py [--net unet|transformer] [--obs-dim 39] [--action-dim 4] [--reps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from omegaconf import OmegaConf

from robopolicy.data.normalize import Normalizer
from robopolicy.defaults import group_node
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.policies.build import build_policy

CASES = [  # (label, policy config, sampler)
    ("DP DDPM-100", "diffusion", {"name": "ddpm", "steps": 100}),
    ("DP DDIM-10", "diffusion", {"name": "ddim", "steps": 10}),
    ("DP DPM-Solver++-10", "diffusion", {"name": "dpmsolver++", "steps": 10}),
    ("BESO DDIM-1", "beso", {"name": "ddim", "steps": 1}),
    ("BESO DDIM-3", "beso", {"name": "ddim", "steps": 3}),
    ("BESO DDIM-10", "beso", {"name": "ddim", "steps": 10}),
]


def paired_ms(sample_fn, net_fn, evals: int, reps: int, warmup: int = 2) -> tuple[float, float, float]:
    """Alternate one full ``sample_fn`` call and ``evals`` bare ``net_fn`` calls per repetition, so both
    see the same machine load. -> (median chunk ms, median net-only ms per forward, median outside share)."""
    for _ in range(warmup):
        sample_fn()
        net_fn()
    totals, nets, shares = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        sample_fn()
        t1 = time.perf_counter()
        for _ in range(evals):
            net_fn()
        t2 = time.perf_counter()
        totals.append((t1 - t0) * 1e3)
        nets.append((t2 - t1) * 1e3 / evals)
        shares.append(1.0 - (t2 - t1) / (t1 - t0))
    return statistics.median(totals), statistics.median(nets), statistics.median(shares)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", default="unet", choices=["unet", "transformer", "mlp"])
    ap.add_argument("--obs-dim", type=int, default=39)
    ap.add_argument("--action-dim", type=int, default=4)
    ap.add_argument("--obs-horizon", type=int, default=2)
    ap.add_argument("--action-horizon", type=int, default=16)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--cases", nargs="*", default=None, help="subset of case labels, e.g. 'BESO DDIM-3'")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    a_dim, o_dim = args.action_dim, args.obs_dim
    spec = EnvSpec(obs={"state": ObsKeySpec((o_dim,))}, action_dim=a_dim, action_low=(-1.0,) * a_dim,
                   action_high=(1.0,) * a_dim, max_episode_steps=500)
    rng = np.random.default_rng(0)
    norm = Normalizer.fit({"state": rng.normal(size=(1000, o_dim)).astype(np.float32),
                           "action": rng.uniform(-1, 1, size=(1000, a_dim)).astype(np.float32)},
                          {"state": "minmax", "action": "minmax"})
    task = {"obs_horizon": args.obs_horizon, "action_horizon": args.action_horizon, "exec_horizon": 8}
    policies = {}
    rows = []
    for label, pol, sampler in CASES:
        if args.cases and label not in args.cases:
            continue
        if pol not in policies:
            cfg = OmegaConf.create({"task": task, "policy": group_node("policy", pol),
                                    "net": OmegaConf.load(f"conf/net/{args.net}.yaml")})
            policies[pol] = build_policy(cfg, spec, norm).eval()
        p = policies[pol]
        p.set_sampler(sampler)
        for b in args.batch:
            obs = {"state": rng.normal(size=(b, args.obs_horizon, o_dim)).astype(np.float32)}
            x = torch.randn(b, args.action_horizon, a_dim)
            t = torch.full((b,), 10.0)
            cond = torch.randn(b, p.cond_dim)
            evals = p.sampler.n_evals
            with torch.no_grad():
                total, net_ms, over = paired_ms(lambda: p.sample(obs, n=1), lambda: p.net(x, t, cond), evals, args.reps)  # noqa: B023 - called within this iteration
            rows.append((label, b, total, net_ms, evals, over))
    n_params = {k: sum(q.numel() for q in v.net.parameters()) for k, v in policies.items()}
    print(f"net={args.net} ({', '.join(f'{k}: {v / 1e6:.2f} M params' for k, v in n_params.items())}), obs {o_dim} x To={args.obs_horizon}, "
          f"action {a_dim} x Tp={args.action_horizon}, torch threads={torch.get_num_threads()}, median of {args.reps} paired repetitions\n")
    print("| sampler | batch | chunk ms | net forward ms | evals | net x evals ms | outside net |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, b, total, net_ms, evals, over in rows:
        print(f"| {label} | {b} | {total:.2f} | {net_ms:.3f} | {evals} | {net_ms * evals:.2f} | {100 * over:.1f}% |")


if __name__ == "__main__":
    main()
