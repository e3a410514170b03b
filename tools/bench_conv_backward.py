"""Where the 64 M U-Net's training step goes on CPU: Conv1d forward, input gradient and weight gradient.

For the U-Net's conv shapes at batch 64 (kernel 5, C channels over T steps), oneDNN's Conv1d (what
``nn.Conv1d`` runs on CPU) is timed against the same convolution written as im2col + one GEMM
(``F.pad`` + ``unfold`` + ``addmm``; its gradients are GEMMs too), in fp32 and under bf16 autocast.
Calls interleaved, median ms of ``--reps`` rounds. This is a diagnosis, not a change: the U-Net keeps
``nn.Conv1d``.

    python tools/bench_conv_backward.py [--reps 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

SHAPES = [(256, 16), (512, 8), (1024, 4)]  # (channels, time steps) of the 64 M U-Net's levels (horizon 16)


def im2col_conv1d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x (B, C, T), w (Co, C, K), b (Co,) -> (B, Co, T), 'same' padding, as one GEMM."""
    k = w.shape[-1]
    cols = F.pad(x, (k // 2, k // 2)).unfold(2, k, 1).permute(0, 2, 1, 3).reshape(x.shape[0] * x.shape[2], -1)
    return torch.addmm(b, cols, w.reshape(w.shape[0], -1).t()).view(x.shape[0], x.shape[2], -1).transpose(1, 2)


def parts(fn, x, conv, bf16: bool) -> tuple[float, float, float]:
    """ms of forward, input gradient, weight gradient."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        t0 = time.perf_counter()
        y = fn(x, conv.weight, conv.bias).float()
    t1 = time.perf_counter()
    g = torch.ones_like(y)
    (gi,) = torch.autograd.grad(y, x, g, retain_graph=True)
    t2 = time.perf_counter()
    (gw,) = torch.autograd.grad(y, conv.weight, g)
    t3 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, kernel 5; ms: forward / grad input / grad weight")
    for c, t in SHAPES:
        x = torch.randn(args.batch, c, t, requires_grad=True)
        conv = torch.nn.Conv1d(c, c, 5, padding=2)
        cases = {"oneDNN Conv1d fp32": (lambda x, w, b: F.conv1d(x, w, b, padding=2), False),
                 "oneDNN Conv1d bf16": (lambda x, w, b: F.conv1d(x, w, b, padding=2), True),
                 "im2col GEMM fp32": (im2col_conv1d, False), "im2col GEMM bf16": (im2col_conv1d, True)}
        res = {k: [] for k in cases}
        for i in range(args.reps + 1):
            for k, (fn, bf16) in cases.items():
                r = parts(fn, x, conv, bf16)
                if i:
                    res[k].append(r)
        for k, v in res.items():
            f, gi, gw = (statistics.median(col) for col in zip(*v))
            print(f"C={c:<5} T={t:<3} {k:<20} {f:7.1f} / {gi:7.1f} / {gw:7.1f}   total {f + gi + gw:7.1f}")


if __name__ == "__main__":
    main()
