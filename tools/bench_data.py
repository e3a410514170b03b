"""Benchmark: training windows per second from an episode store, and append throughput.

Synthesises its own stores in a temporary folder (low-dim: state 39-d; image: 96x96x3 camera +
state), then reads (To=2, Tp=16) windows through a shuffled DataLoader at batch 256 with 0 and 2
workers, images cached in memory and read lazily from zarr. Prints one table.

    OMP_NUM_THREADS=1 python tools/bench_data.py                 # default sizes
    python tools/bench_data.py --episodes 10 --batches 3          # quick check
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from robopolicy.data import EpisodeStore, WindowDataset
from robopolicy.envs.spec import EnvSpec, ObsKeySpec


def make_store(path: Path, episodes: int, steps: int, image_size: int | None, seed: int = 0, fsync: bool = True) -> tuple[EpisodeStore, float]:
    """Write ``episodes`` random episodes of ``steps`` steps -> (store, append steps per second)."""
    obs = {"state": ObsKeySpec((39,))}
    if image_size:
        obs["cam"] = ObsKeySpec((image_size, image_size, 3), "uint8", "rgb")
    spec = EnvSpec(obs=obs, action_dim=4, action_low=(-1.0,) * 4, action_high=(1.0,) * 4, max_episode_steps=steps, name="bench")
    store = EpisodeStore.create(path, spec, attrs={"command": "tools/bench_data.py"}, overwrite=True, fsync=fsync)
    rng = np.random.default_rng(seed)
    elapsed = 0.0
    for _ in range(episodes):
        ep = {"state": rng.normal(size=(steps, 39)).astype(np.float32), "action": rng.uniform(-1, 1, (steps, 4)).astype(np.float32),
              "reward": np.zeros(steps, np.float32), "success": np.zeros(steps, bool), "done": np.arange(steps) == steps - 1}
        if image_size:
            # smooth images compress like camera frames do, unlike uniform noise
            base = rng.integers(0, 256, size=(steps, image_size // 8, image_size // 8, 3), dtype=np.uint8)
            ep["cam"] = np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)
        t0 = time.perf_counter()
        store.append_episode(ep)
        elapsed += time.perf_counter() - t0
    return store, episodes * steps / elapsed


def windows_per_second(store: EpisodeStore, obs_keys: list[str], workers: int, batch: int, batches: int, cache_images: bool) -> float:
    """Shuffled DataLoader throughput over ``batches`` batches after one warm-up batch."""
    ds = WindowDataset(store, obs_keys, obs_horizon=2, action_horizon=16, cache_images=cache_images)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        n += len(b["action"])
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--steps", type=int, default=150, help="steps per episode")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=20, help="timed batches per case")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        low, low_rate = make_store(Path(tmp) / "low.zarr", args.episodes, args.steps, None)
        img, img_rate = make_store(Path(tmp) / "img.zarr", args.episodes, args.steps, args.image_size)
        _, low_nosync = make_store(Path(tmp) / "low_nosync.zarr", args.episodes, args.steps, None, fsync=False)
        _, img_nosync = make_store(Path(tmp) / "img_nosync.zarr", args.episodes, args.steps, args.image_size, fsync=False)
        print(f"store: {args.episodes} episodes x {args.steps} steps; append steps/s (fsync / no fsync): "
              f"low-dim {low_rate:,.0f} / {low_nosync:,.0f}, with {args.image_size}x{args.image_size} images "
              f"{img_rate:,.0f} / {img_nosync:,.0f}")
        cases = [("low-dim", low, ["state"], True)]
        cases += [(f"image {args.image_size}px cached", img, ["state", "cam"], True), (f"image {args.image_size}px lazy", img, ["state", "cam"], False)]
        for name, store, keys, cache in cases:
            for w in args.workers:
                rows.append((name, w, windows_per_second(store, keys, w, args.batch, args.batches, cache)))
    print(f"\n{'data':<22} {'workers':>7} {'windows/s':>12}   (batch {args.batch}, To=2, Tp=16)")
    for name, w, rate in rows:
        print(f"{name:<22} {w:>7} {rate:>12,.0f}")


if __name__ == "__main__":
    main()
