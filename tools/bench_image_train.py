"""Image-policy training speed: samples/s, the split of a step, lazy (streaming) reads.

    python tools/bench_image_train.py                          # both encoders, 1 and 2 cameras, 84 px, cpu (+cuda)
    python tools/bench_image_train.py --encoders small_cnn --cameras 1 --batch 32 --steps 10
    python tools/bench_image_train.py --only lazy              # lazy-read windows/s and the data share only

Everything runs on a synthetic episode store the script writes to a temporary folder (random
uint8 frames, Meta-World-like proprio (4,) and actions (4,)). Three measurements:

1. ``train``: per encoder (conf/encoder/<name>.yaml) and number of cameras, BESO + U-Net
   ([32,64,128]) training steps on in-memory windows; per step the time of data (fetch + collate +
   move to the device), encoder (forward + backward of the image encoders alone, measured on the same
   batch), denoiser (the rest of forward + backward) and optimizer, and samples/s of the whole step.
2. ``lazy``: windows/s of ``WindowDataset(read="lazy")`` sampled at random from a store several
   times larger than its chunk cache, beside ``read="memory"``.
3. ``share``: the data-loading share of a training step (small encoder, 1 camera) when the windows
   stream lazily from disk, with DataLoader workers 0 and 2 (prefetching overlaps reads and compute).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.data import EpisodeStore, WindowDataset, fit_normalizer
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.policies.build import build_policy
from robopolicy.training.trainer import to_device

CAMS = ["corner2", "gripperPOV"]


def make_store(path: Path, n_cams: int, size: int, episodes: int, length: int, seed: int = 0) -> EpisodeStore:
    obs = {"agent_pos": ObsKeySpec((4,)), **{c: ObsKeySpec((size, size, 3), "uint8", "rgb") for c in CAMS[:n_cams]}}
    spec = EnvSpec(obs=obs, action_dim=4, action_low=(-1.0,) * 4, action_high=(1.0,) * 4, max_episode_steps=length,
                   extra={"privileged_keys": ["state"]})
    store = EpisodeStore.create(path, spec, overwrite=True, fsync=False)
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        ep = {"agent_pos": rng.normal(size=(length, 4)).astype(np.float32),
              "action": rng.uniform(-1, 1, (length, 4)).astype(np.float32),
              "reward": np.zeros(length, np.float32), "success": np.zeros(length, bool), "done": np.arange(length) == length - 1}
        for c in CAMS[:n_cams]:
            ep[c] = rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8)
        store.append_episode(ep)
    return store


def make_policy(store: EpisodeStore, encoder: str, device: torch.device, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["task=metaworld", "policy=beso", "net=unet", "net.down_dims=[32,64,128]", "dataset=x",
                                          "run_dir=x", f"+encoder@policy.encoder={encoder}", *overrides])
    norm = fit_normalizer(store, ["agent_pos"])
    torch.manual_seed(0)
    return build_policy(cfg, store.spec, norm).to(device).train()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def collate(items):
    return torch.utils.data.default_collate(items)


def bench_train(store, encoder, batch, steps, device, overrides, loader_workers=0, dataset=None) -> dict:
    policy = make_policy(store, encoder, device, overrides)
    keys = list(store.spec.obs)
    ds = dataset or WindowDataset(store, keys, policy.obs_horizon, policy.action_horizon, read="memory")
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=loader_workers, drop_last=True,
                                         persistent_workers=loader_workers > 0, prefetch_factor=4 if loader_workers else None,
                                         generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    enc = policy.obs_encoder
    t = {"data": [], "fwd_bwd": [], "optimizer": [], "encoder": []}
    it = iter(loader)
    for s in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        b = to_device(b, device)
        _sync(device)
        t1 = time.perf_counter()
        loss, _ = policy.compute_loss(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _sync(device)
        t2 = time.perf_counter()
        opt.step()
        _sync(device)
        t3 = time.perf_counter()
        # The image encoders alone on the same batch (forward + backward), to split the step.
        pre = enc.prepare(b["obs"], policy.device)
        t4 = time.perf_counter()
        enc.features(pre).sum().backward()
        _sync(device)
        t5 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if s >= max(2, steps // 4):  # skip warm-up steps
            t["data"].append(t1 - t0)
            t["fwd_bwd"].append(t2 - t1)
            t["optimizer"].append(t3 - t2)
            t["encoder"].append(t5 - t4)
    m = {k: float(np.mean(v)) * 1000 for k, v in t.items()}
    step_ms = m["data"] + m["fwd_bwd"] + m["optimizer"]
    enc_ms = min(m["encoder"], m["fwd_bwd"])
    return {"encoder": encoder, "cameras": len(store.spec.rgb_keys), "batch": batch, "device": str(device),
            "samples_per_s": round(batch / (step_ms / 1000), 1), "step_ms": round(step_ms, 1),
            "split_ms": {"data": round(m["data"], 1), "encoder": round(enc_ms, 1), "denoiser": round(m["fwd_bwd"] - enc_ms, 1),
                         "optimizer": round(m["optimizer"], 1)},
            "data_share": round(m["data"] / step_ms, 4),
            "params_M": round(sum(p.numel() for p in policy.parameters()) / 1e6, 2)}


def bench_lazy(store, n_windows: int, cache_bytes: int) -> dict:
    keys = list(store.spec.obs)
    out = {"store_image_MB": round(sum(store.n_steps * int(np.prod(store.spec.obs[k].shape)) for k in store.spec.rgb_keys) / 2**20, 1),
           "cache_MB": round(cache_bytes / 2**20, 1), "windows": n_windows}
    rng = np.random.default_rng(0)
    for read in ("lazy", "memory"):
        ds = WindowDataset(store, keys, 2, 16, read=read, cache_bytes=cache_bytes)
        idx = rng.integers(0, len(ds), n_windows)
        t0 = time.perf_counter()
        for i in idx:
            ds[int(i)]
        out[f"{read}_windows_per_s"] = round(n_windows / (time.perf_counter() - t0), 1)
        if read == "lazy":
            c = next(iter(ds.arrays._caches.values()))
            out["lazy_hit_rate"] = round(c.hits / max(1, c.hits + c.misses), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoders", nargs="+", default=["small_cnn", "resnet18"])
    ap.add_argument("--cameras", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--size", type=int, default=84)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    ap.add_argument("--only", choices=["train", "lazy", "share"], default=None)
    ap.add_argument("--lazy-episodes", type=int, default=40, help="episodes of 100 steps in the store for the lazy test")
    ap.add_argument("--cache-mb", type=float, default=16.0)
    ap.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides, e.g. policy.encoder.autocast_bf16=true")
    args = ap.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    tmp = Path(tempfile.mkdtemp(prefix="bench_img_"))
    results = []
    if args.only in (None, "train"):
        for n_cams in args.cameras:
            store = make_store(tmp / f"train{n_cams}.zarr", n_cams, args.size, episodes=4, length=100)
            for dev in devices:
                for enc in args.encoders:
                    r = bench_train(store, enc, args.batch, args.steps, torch.device(dev), args.override)
                    print(json.dumps({"bench": "train", **r}), flush=True)
                    results.append(r)
    if args.only in (None, "lazy", "share"):
        big = make_store(tmp / "big.zarr", 1, args.size, episodes=args.lazy_episodes, length=100, seed=1)
        if args.only in (None, "lazy"):
            r = bench_lazy(big, 2000, int(args.cache_mb * 2**20))
            print(json.dumps({"bench": "lazy", **r}), flush=True)
        if args.only in (None, "share"):
            for workers in (0, 2):
                ds = WindowDataset(big, list(big.spec.obs), 2, 16, read="lazy", cache_bytes=int(args.cache_mb * 2**20))
                r = bench_train(big, "small_cnn", args.batch, args.steps, torch.device(devices[-1]), args.override,
                                loader_workers=workers, dataset=ds)
                print(json.dumps({"bench": "share", "read": "lazy", "workers": workers, **r}), flush=True)


if __name__ == "__main__":
    main()
