"""Benchmark: what training start reads from the store, separately per consumer versus read once.

Synthesises a store (state 39-d, 4-d actions and, unless ``--no-image``, a camera) with
tools/bench_data.py's writer, then builds what ``robopolicy-train`` builds at start: the normalizer
fit on the training episodes and the train and validation ``WindowDataset``:

- ``separate``: each consumer reads the store itself (before: ``fit_normalizer(store)`` and two
  ``WindowDataset(store)``);
- ``shared``: one ``StepArrays`` read once and passed to all three (what ``robopolicy-train`` does now).

Prints, per way: store reads (``EpisodeStore.get`` calls), seconds, and the bytes of Python/numpy
allocations still held afterwards and at the peak (tracemalloc).

    OMP_NUM_THREADS=1 python tools/bench_training_start.py
    python tools/bench_training_start.py --episodes 10 --steps 100 --no-image    # quick check
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import make_store  # noqa: E402

from robopolicy.data import EpisodeStore, WindowDataset, fit_normalizer, split_episodes  # noqa: E402
from robopolicy.data.step_arrays import StepArrays  # noqa: E402


def build(store: EpisodeStore, keys: list[str], shared: bool) -> tuple:
    train_idx, val_idx = split_episodes(store.n_episodes, 0.1, 0)
    source = StepArrays(store, [*keys, "action"]) if shared else store
    norm = fit_normalizer(source, ["state"], episodes=train_idx)
    return norm, WindowDataset(source, keys, 2, 16, episodes=train_idx), WindowDataset(source, keys, 2, 16, episodes=val_idx)


def measure(path: Path, keys: list[str], shared: bool) -> dict:
    store = EpisodeStore.open(path)
    reads = {"n": 0}
    real = EpisodeStore.get

    def counting(self, key, sl=None):
        reads["n"] += 1
        return real(self, key, sl)

    EpisodeStore.get = counting
    try:
        tracemalloc.start()
        t0 = time.perf_counter()
        built = build(store, keys, shared)
        seconds = time.perf_counter() - t0
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        EpisodeStore.get = real
    del built
    return {"reads": reads["n"], "seconds": seconds, "held_mb": held / 2**20, "peak_mb": peak / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--no-image", action="store_true")
    args = ap.parse_args()
    image = None if args.no_image else args.image_size
    keys = ["state"] + (["cam"] if image else [])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.zarr"
        make_store(path, args.episodes, args.steps, image, fsync=False)
        print(f"store: {args.episodes} episodes x {args.steps} steps, keys {keys + ['action']}"
              f"{f', camera {image}x{image}x3' if image else ''}")
        print(f"{'way':<10}{'store reads':>12}{'seconds':>10}{'held MB':>10}{'peak MB':>10}")
        for name, shared in (("separate", False), ("shared", True)):
            r = measure(path, keys, shared)
            print(f"{name:<10}{r['reads']:>12d}{r['seconds']:>10.2f}{r['held_mb']:>10.1f}{r['peak_mb']:>10.1f}")


if __name__ == "__main__":
    main()
