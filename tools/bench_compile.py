"""Does torch.compile (or TorchScript freezing) speed up the denoiser at batch 1 on this CPU?

Builds the quick-start U-Net (down_dims 32/64/128) inside a 1-step policy (state 39 -> action 4, horizon 16),
then times one network forward eagerly, TorchScript-frozen, and (with ``--compile``) torch.compile'd,
interleaved, median of 150 rounds; prints the compile time and the largest output difference.

    python tools/bench_compile.py [--compile]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compile", action="store_true", help="also torch.compile (minutes on a loaded 2-core CPU)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = EnvSpec(obs={"state": ObsKeySpec((39,))}, action_dim=4, action_low=(-1.0,) * 4, action_high=(1.0,) * 4, max_episode_steps=500)
    rng = np.random.default_rng(0)
    norm = Normalizer.fit({"state": rng.normal(size=(100, 39)).astype(np.float32), "action": rng.uniform(-1, 1, (100, 4)).astype(np.float32)},
                          {"state": "minmax", "action": "minmax"})
    cfg = OmegaConf.create({"task": {"obs_horizon": 2, "action_horizon": 16, "exec_horizon": 8},
                            "policy": group_node("policy", "beso"), "net": OmegaConf.load("conf/net/unet.yaml")})
    cfg.net.down_dims = [32, 64, 128]
    net = build_policy(cfg, spec, norm).eval().net
    x, cn, cond = torch.randn(1, 16, 4), torch.full((1,), 1.1), torch.randn(1, 78)
    with torch.inference_mode():
        ref = net(x, cn, cond)
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, (x, cn, cond), check_trace=False).eval()))
        print("max diff frozen", (frozen(x, cn, cond) - ref).abs().max().item())
        fns = {"eager": lambda: net(x, cn, cond), "jit-frozen": lambda: frozen(x, cn, cond)}
        if args.compile:
            t0 = time.time()
            comp = torch.compile(net, dynamic=False)
            comp(x, cn, cond)
            print("compile s", time.time() - t0)
            print("max diff compiled", (comp(x, cn, cond) - ref).abs().max().item())
            fns["compiled"] = lambda: comp(x, cn, cond)
        times = {k: [] for k in fns}
        for f in fns.values():
            for _ in range(5):
                f()
        for _ in range(150):
            for k, f in fns.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    print({k: round(statistics.median(v) * 1e3, 2) for k, v in times.items()}, "ms per forward (median)")


if __name__ == "__main__":
    main()
