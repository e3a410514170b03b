"""Check our LeRobot v3.0 import/export against the real ``lerobot`` package, both ways.

lerobot 0.4.4 pins torch < 2.11 and cannot join this project's environment, so this check runs
with lerobot's pure-Python code put on the path beside our torch (no torch is installed)::

    pip install --no-deps --target /tmp/lr lerobot==0.4.4 'datasets>=4,<5' pandas accelerate draccus==0.10.0 ...
    PYTHONPATH=/tmp/lr OMP_NUM_THREADS=1 python tools/check_lerobot_compat.py [--out /tmp/lerobot_compat]

1. LeRobot writes a dataset (``LeRobotDataset.create`` / ``add_frame`` / ``save_episode``, its own
   AV1 video encoding); our importer reads it; low-dim data must match exactly and the frames
   within codec tolerance.
2. Our exporter writes a v3.0 folder; ``LeRobotDataset(root=...)`` loads its metadata and frame
   table, which must match our store, and the video frame its metadata points at must match.
Prints one JSON object per check.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.data.formats import export_dataset, import_dataset
from robopolicy.data.store import EpisodeStore

SIZE, FPS, LENGTHS = 32, 10, (12, 9, 15)


def frames(ep: int, T: int) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    t = np.arange(T)[:, None, None] / T
    ones = np.ones((T, SIZE, SIZE))
    return np.clip(np.stack([(60 + 150 * x) * ones, 40 + 150 * (y + t) / 2, (30 + 40 * ep) * ones], -1), 0, 255).astype(np.uint8)


def lerobot_writes_we_read(out: Path, import_cfg: dict) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {"observation.state": {"dtype": "float32", "shape": (3,), "names": None},
                "action": {"dtype": "float32", "shape": (2,), "names": None},
                "observation.images.top": {"dtype": "video", "shape": (SIZE, SIZE, 3), "names": ["height", "width", "channels"]}}
    ds = LeRobotDataset.create("local/compat", FPS, root=out / "by_lerobot", features=features, use_videos=True)
    rng = np.random.default_rng(0)
    states, actions = [], []
    for ep, T in enumerate(LENGTHS):
        imgs = frames(ep, T)
        s, a = rng.normal(size=(T, 3)).astype(np.float32), rng.uniform(-1, 1, (T, 2)).astype(np.float32)
        states.append(s)
        actions.append(a)
        for t in range(T):
            ds.add_frame({"observation.state": s[t], "action": a[t], "observation.images.top": imgs[t], "task": "reach"})
        ds.save_episode()
    ds.finalize()
    import_dataset(out / "by_lerobot", out / "from_lerobot.zarr", "auto", import_cfg, progress=False)
    store = EpisodeStore.open(out / "from_lerobot.zarr")
    video_err = np.concatenate([np.abs(store.episode(i)["top"].astype(int) - frames(i, T)).ravel() for i, T in enumerate(LENGTHS)])
    return {"check": "lerobot_writes_we_read", "episodes": store.n_episodes, "steps": store.n_steps,
            "state_exact": bool(np.array_equal(store.get("agent_pos"), np.concatenate(states))),
            "action_exact": bool(np.array_equal(store.get("action"), np.concatenate(actions))),
            "video_abs_error_mean": round(float(video_err.mean()), 3), "video_abs_error_max": int(video_err.max())}


def we_write_lerobot_reads(out: Path, export_cfg: dict) -> dict:
    """LeRobot loads our export's metadata and frame table; the video frame it points at is decoded with PyAV.

    (LeRobot 0.4.4 decodes video through torchcodec or ``torchvision.io.VideoReader``; neither
    exists beside torch 2.14 / torchvision 0.29, so the frame is fetched at the episode's
    ``from_timestamp`` in the file LeRobot names, as its PyAV path would.)
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robopolicy.data.video import FrameReader

    store = EpisodeStore.open(out / "from_lerobot.zarr")
    export_dataset(store.path, out / "by_us", "lerobot", export_cfg, progress=False)
    ds = LeRobotDataset("local/ours", root=out / "by_us", video_backend="pyav")
    table = ds.hf_dataset.with_format("numpy")
    state, action = np.stack(table["observation.state"]), np.stack(table["action"])
    ep = ds.meta.episodes[1]  # the second episode shares the first one's mp4
    path = ds.root / ds.meta.get_video_file_path(1, "observation.images.top")
    start = round(ep["videos/observation.images.top/from_timestamp"] * ds.fps)
    with FrameReader() as reader:
        img = reader.read(path, start + 3, 1, ds.fps)[0]
    want = store.episode(1)["top"][3]
    return {"check": "we_write_lerobot_reads", "frames": len(ds), "episodes": ds.num_episodes, "fps": ds.fps,
            "state_exact": bool(np.array_equal(state, store.get("agent_pos"))), "action_exact": bool(np.array_equal(action, store.get("action"))),
            "tasks": list(ds.meta.tasks.index), "episode_1_from_timestamp": float(ep["videos/observation.images.top/from_timestamp"]),
            "video_abs_error_mean_frame": round(float(np.abs(img.astype(int) - want.astype(int)).mean()), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="/tmp/lerobot_compat")
    out = Path(p.parse_args().out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    import_cfg = yaml.safe_load((CONF_DIR / "import.yaml").read_text())
    export_cfg = yaml.safe_load((CONF_DIR / "export.yaml").read_text())
    print(json.dumps(lerobot_writes_we_read(out, import_cfg)))
    print(json.dumps(we_write_lerobot_reads(out, export_cfg)))


if __name__ == "__main__":
    main()
