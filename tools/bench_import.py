"""Import speed of a LeRobot v3.0 dataset with two 84 px video streams, and video decoder figures.

    OMP_NUM_THREADS=1 python tools/bench_import.py [--episodes 20] [--length 100] [--size 84] [--out /tmp/bench_import]

1. Writes a synthetic store (two cameras, 84x84, moving smooth pattern plus sensor noise) and
   exports it as a LeRobot v3.0 folder with AV1 video (LeRobot's default; SVT-AV1, yuv420p),
   many episodes per mp4 (each encoded on its own and appended).
2. Times ``import_dataset`` on it: frames/s (one frame = one time step with both cameras), and
   reading + decoding the same episodes without writing a store (the rest is the store's appends).
3. Decodes one camera's file encoded with AV1, h264 and HEVC through PyAV (FFmpeg threads
   automatic and 1), reporting decoded frames/s; tries torchcodec and says why it is not used
   when it cannot load.
Prints one JSON object per figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.data.formats import export_dataset, import_dataset
from robopolicy.data.store import EpisodeStore
from robopolicy.data.video import FrameReader, encode_video
from robopolicy.envs.spec import EnvSpec, ObsKeySpec


def synthetic_frames(rng: np.random.Generator, T: int, size: int, phase: float) -> np.ndarray:
    """(T, size, size, 3) uint8: a blob moving over a gradient, plus per-pixel noise (like a camera)."""
    y, x = np.mgrid[0:size, 0:size] / size
    t = np.arange(T)[:, None, None] / T
    cx, cy = 0.5 + 0.3 * np.cos(2 * np.pi * (t + phase)), 0.5 + 0.3 * np.sin(2 * np.pi * (t + phase))
    blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.01)
    img = np.stack([80 + 100 * x * np.ones_like(t) + 70 * blob, 60 + 120 * y * np.ones_like(t), 40 + 180 * blob], -1)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def make_store(path: Path, episodes: int, T: int, size: int) -> EpisodeStore:
    spec = EnvSpec(obs={"top": ObsKeySpec((size, size, 3), "uint8", "rgb"), "wrist": ObsKeySpec((size, size, 3), "uint8", "rgb"),
                        "agent_pos": ObsKeySpec((7,))}, action_dim=7, action_low=(-1.0,) * 7, action_high=(1.0,) * 7,
                   max_episode_steps=T, control_hz=30.0, name="bench")
    store = EpisodeStore.create(path, spec, fsync=False)
    rng = np.random.default_rng(0)
    for i in range(episodes):
        store.append_episode({"top": synthetic_frames(rng, T, size, i / episodes), "wrist": synthetic_frames(rng, T, size, 0.5 + i / episodes),
                              "agent_pos": rng.normal(size=(T, 7)).astype(np.float32), "action": rng.uniform(-1, 1, (T, 7)).astype(np.float32),
                              "reward": np.zeros(T, np.float32), "success": np.arange(T) == T - 1, "done": np.arange(T) == T - 1})
    return store


def decode_fps(path: Path, n: int, fps: float, threads: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        with FrameReader(threads=threads) as reader:
            t0 = time.perf_counter()
            reader.read(path, 0, n, fps)
            best = min(best, time.perf_counter() - t0)
    return n / best


def torchcodec_status(path: Path, n: int) -> dict:
    """torchcodec's AV1 decode speed, or why it cannot run here (it needs system FFmpeg libraries)."""
    try:
        from torchcodec.decoders import VideoDecoder

        t0 = time.perf_counter()
        VideoDecoder(str(path)).get_frames_in_range(0, n)
    except Exception as e:  # ImportError, or RuntimeError/OSError when its FFmpeg libraries are missing
        lines = str(e).splitlines()
        missing = next((ln.strip() for ln in lines if "cannot open shared object" in ln), "")
        return {"decoder": "torchcodec", "available": False, "reason": f"{type(e).__name__}: {lines[0][:120]} {missing}".strip()}
    return {"decoder": "torchcodec", "available": True, "frames_per_s": round(n / (time.perf_counter() - t0), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--size", type=int, default=84)
    p.add_argument("--out", default="/tmp/bench_import")
    args = p.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    import_cfg = yaml.safe_load((CONF_DIR / "import.yaml").read_text())
    export_cfg = yaml.safe_load((CONF_DIR / "export.yaml").read_text())

    store = make_store(out / "synthetic.zarr", args.episodes, args.length, args.size)
    t0 = time.perf_counter()
    export_dataset(store.path, out / "lerobot_v3", "lerobot", export_cfg, progress=False)
    export_s = time.perf_counter() - t0
    frames = store.n_steps
    print(json.dumps({"figure": "export_v3_av1", "frames": frames, "cameras": 2, "size": args.size, "seconds": round(export_s, 2),
                      "frames_per_s": round(frames / export_s, 1)}))

    t0 = time.perf_counter()
    import_dataset(out / "lerobot_v3", out / "imported.zarr", "auto", import_cfg, progress=False)
    import_s = time.perf_counter() - t0
    back = EpisodeStore.open(out / "imported.zarr")
    err = np.abs(back.get("top").astype(np.int16) - store.get("top").astype(np.int16))
    print(json.dumps({"figure": "import_v3_av1", "episodes": back.n_episodes, "frames": back.n_steps, "cameras": 2, "size": args.size,
                      "seconds": round(import_s, 2), "frames_per_s": round(back.n_steps / import_s, 1),
                      "camera_frames_per_s": round(2 * back.n_steps / import_s, 1),
                      "video_abs_error": {"mean": round(float(err.mean()), 3), "p99": float(np.percentile(err, 99)), "max": int(err.max())}}))

    from robopolicy.data.formats.importer import open_source

    t0 = time.perf_counter()
    n = sum(len(ep["action"]) for ep in open_source(out / "lerobot_v3", "lerobot", import_cfg).episodes())
    read_s = time.perf_counter() - t0
    print(json.dumps({"figure": "read_v3_av1_without_store_writes", "frames": n, "seconds": round(read_s, 2), "frames_per_s": round(n / read_s, 1),
                      "share_of_import_time": round(read_s / import_s, 3)}))

    top = store.get("top")
    fps = store.spec.control_hz
    for codec in ("av1", "h264", "hevc"):
        path = out / f"top_{codec}.mp4"
        encode_video(path, top, fps, codec=codec, crf=30, preset=int(export_cfg["preset"]))
        for threads in (0, 1):
            print(json.dumps({"figure": "decode", "decoder": "pyav", "codec": codec, "threads": threads or "auto", "frames": len(top),
                              "size": args.size, "frames_per_s": round(decode_fps(path, len(top), fps, threads), 1)}))
    print(json.dumps({"figure": "decode", "codec": "av1", **torchcodec_status(out / "top_av1.mp4", len(top))}))


if __name__ == "__main__":
    main()
