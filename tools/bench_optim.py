"""Per-step cost of the optimizer and EMA variants on the 64 M U-Net's parameters (CPU), interleaved medians.

AdamW for-loop (torch's CPU default), foreach, fused; EMA by diffusers' EMAModel.step (loop / foreach) and by
one torch._foreach_lerp_; grad clipping with and without foreach. Gradients are random; the figures are the
optimizer's own time, the part of a training step a faster loop can change.

    python tools/bench_optim.py [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers.training_utils import EMAModel

from robopolicy.defaults import constructor_kwargs, group_config
from robopolicy.nets.unet1d import ConditionalUnet1D


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    # conf/net/unet.yaml at Diffusion Policy's size (its other settings from the file)
    net = ConditionalUnet1D(4, 16, 78, **constructor_kwargs(group_config("net", "unet", {"down_dims": [256, 512, 1024]})))
    params = list(net.parameters())
    print(f"{sum(p.numel() for p in params) / 1e6:.1f} M parameters, {len(params)} tensors, {torch.get_num_threads()} threads")
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opts = {f"AdamW {k}": torch.optim.AdamW(params, lr=1e-4, **kw) for k, kw in
            (("for-loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True}))}
    ema_loop, ema_fe = EMAModel(params, foreach=False), EMAModel(params, foreach=True)
    shadow = [p.detach().clone() for p in params]
    fns = {k: o.step for k, o in opts.items()}
    fns.update({"EMA diffusers loop": lambda: ema_loop.step(params), "EMA diffusers foreach": lambda: ema_fe.step(params),
                "EMA _foreach_lerp_": lambda: torch._foreach_lerp_(shadow, params, 0.001),
                "clip_grad_norm_ loop": lambda: torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=False),
                "clip_grad_norm_ foreach": lambda: torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)})
    times = {k: [] for k in fns}
    with torch.no_grad():
        for i in range(args.reps + 1):
            for k, f in fns.items():
                t0 = time.perf_counter()
                f()
                if i:
                    times[k].append((time.perf_counter() - t0) * 1e3)
    for k, v in times.items():
        print(f"{k:<26} {statistics.median(v):8.1f} ms")


if __name__ == "__main__":
    main()
