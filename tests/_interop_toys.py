"""Tiny datasets in other tools' on-disk layouts, written by hand from the documented layouts.

Deliberately independent of robopolicy's exporter: PyAV encodes the mp4 files and pyarrow writes
the parquet files directly, so the importer is tested against the layout, not against itself.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FPS = 10
STATE_DIM, ACTION_DIM = 3, 2


def frames(ep: int, cam: int, T: int, size: int) -> np.ndarray:
    """Smooth images (T, size, size, 3) uint8 that change with the step: easy to compress, easy to compare."""
    y, x = np.mgrid[0:size, 0:size] / size
    t = np.arange(T)[:, None, None] / max(T, 1)
    r = 60 + 120 * x[None] * np.ones_like(t)
    g = 40 + 150 * (y[None] + t) / 2
    b = np.full_like(g, 30 + 50 * cam + 20 * ep)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def lowdim(ep: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(ep)
    return rng.normal(size=(T, STATE_DIM)).astype(np.float32), rng.uniform(-1, 1, size=(T, ACTION_DIM)).astype(np.float32)


def encode(path: Path, imgs: np.ndarray, codec: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(FPS))
        s.width, s.height, s.pix_fmt = imgs.shape[2], imgs.shape[1], "yuv420p"
        s.options = {"crf": "20"} | ({"preset": "12"} if codec == "libsvtav1" else {}) | ({"x265-params": "log-level=error"} if codec == "libx265" else {})
        for img in imgs:
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode())


def fixed_list(a: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])


def frame_table(ep: int, T: int, start_index: int, with_flags: bool) -> pa.Table:
    state, action = lowdim(ep, T)
    cols = {"observation.state": fixed_list(state), "action": fixed_list(action),
            "timestamp": pa.array(np.arange(T, dtype=np.float32) / FPS), "frame_index": pa.array(np.arange(T, dtype=np.int64)),
            "episode_index": pa.array(np.full(T, ep, np.int64)), "index": pa.array(np.arange(start_index, start_index + T, dtype=np.int64)),
            "task_index": pa.array(np.zeros(T, np.int64))}
    if with_flags:
        done = np.arange(T) == T - 1
        cols.update({"next.reward": pa.array(done.astype(np.float32)), "next.done": pa.array(done), "next.success": pa.array(done)})
    return pa.table(cols)


CAMS = {"observation.images.top": "libsvtav1", "observation.images.wrist": "libx264"}


def features(size: int, cams: dict, with_flags: bool) -> dict:
    f = {"observation.state": {"dtype": "float32", "shape": [STATE_DIM], "names": None},
         "action": {"dtype": "float32", "shape": [ACTION_DIM], "names": None}}
    for name, codec in cams.items():
        f[name] = {"dtype": "video", "shape": [size, size, 3], "names": ["height", "width", "channels"],
                   "info": {"video.codec": "av1" if codec == "libsvtav1" else "h264", "video.pix_fmt": "yuv420p", "video.fps": FPS}}
    if with_flags:
        f |= {"next.reward": {"dtype": "float32", "shape": [1], "names": None}, "next.done": {"dtype": "bool", "shape": [1], "names": None},
              "next.success": {"dtype": "bool", "shape": [1], "names": None}}
    for n, dt in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"), ("task_index", "int64")):
        f[n] = {"dtype": dt, "shape": [1], "names": None}
    return f


def write_v3(root: Path, lengths=(6, 5, 7), size: int = 16, cams: dict = CAMS, with_flags: bool = True, episodes_per_file: int = 2) -> Path:
    """A LeRobot v3.0 folder: ``episodes_per_file`` episodes share each data parquet and each mp4."""
    root = Path(root)
    rows, index = [], 0
    groups = [list(range(len(lengths)))[i:i + episodes_per_file] for i in range(0, len(lengths), episodes_per_file)]
    for file_i, group in enumerate(groups):
        tables, video = [], {name: [] for name in cams}
        offset = 0
        for ep in group:
            T = lengths[ep]
            tables.append(frame_table(ep, T, index, with_flags))
            row = {"episode_index": ep, "tasks": ["push the block"], "length": T, "data/chunk_index": 0, "data/file_index": file_i,
                   "dataset_from_index": index, "dataset_to_index": index + T, "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            for c, name in enumerate(cams):
                video[name].append(frames(ep, c, T, size))
                row |= {f"videos/{name}/chunk_index": 0, f"videos/{name}/file_index": file_i,
                        f"videos/{name}/from_timestamp": offset / FPS, f"videos/{name}/to_timestamp": (offset + T) / FPS}
            rows.append(row)
            offset += T
            index += T
        path = root / f"data/chunk-000/file-{file_i:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(tables), path)
        for name, codec in cams.items():
            encode(root / f"videos/{name}/chunk-000/file-{file_i:03d}.mp4", np.concatenate(video[name]), codec)
    (root / "meta/episodes/chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(pa.table({"task_index": [0], "task": ["push the block"]}), root / "meta/tasks.parquet")
    (root / "meta/stats.json").write_text("{}")
    info = {"codebase_version": "v3.0", "robot_type": "toy", "total_episodes": len(lengths), "total_frames": int(sum(lengths)),
            "total_tasks": 1, "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 500, "fps": FPS,
            "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4", "features": features(size, cams, with_flags)}
    (root / "meta/info.json").write_text(json.dumps(info))
    return root


def write_v21(root: Path, lengths=(5, 4), size: int = 16, codec: str = "libx265") -> Path:
    """A LeRobot v2.1 folder: one parquet and one mp4 per episode, meta/episodes.jsonl, no step flags."""
    root = Path(root)
    index, lines = 0, []
    for ep, T in enumerate(lengths):
        path = root / f"data/chunk-000/episode_{ep:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(frame_table(ep, T, index, with_flags=False), path)
        encode(root / f"videos/chunk-000/observation.images.top/episode_{ep:06d}.mp4", frames(ep, 0, T, size), codec)
        lines.append(json.dumps({"episode_index": ep, "tasks": ["stack"], "length": T}))
        index += T
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta/episodes.jsonl").write_text("\n".join(lines) + "\n")
    (root / "meta/tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "stack"}) + "\n")
    info = {"codebase_version": "v2.1", "robot_type": "toy", "total_episodes": len(lengths), "total_frames": int(sum(lengths)),
            "total_tasks": 1, "total_chunks": 1, "chunks_size": 1000, "fps": FPS, "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": features(size, {"observation.images.top": codec}, False)}
    (root / "meta/info.json").write_text(json.dumps(info))
    return root


def write_dp_zarr(root: Path, lengths=(6, 4), size: int = 16) -> Path:
    """A Diffusion Policy replay buffer in zarr v2: data/{img (float 0-255), state, action}, meta/episode_ends."""
    import zarr

    g = zarr.open_group(str(root), mode="w", zarr_format=2)
    imgs = np.concatenate([frames(ep, 0, T, size) for ep, T in enumerate(lengths)]).astype(np.float32)
    states, actions = zip(*(lowdim(ep, T) for ep, T in enumerate(lengths)))
    g.create_array("data/img", data=imgs, chunks=(4, size, size, 3))
    g.create_array("data/state", data=np.concatenate(states).astype(np.float64))
    g.create_array("data/action", data=np.concatenate(actions))
    g.create_array("meta/episode_ends", data=np.cumsum(lengths).astype(np.int64))
    return Path(root)


def write_v3_png_images(root: Path, lengths=(3, 2), size: int = 16) -> Path:
    """A v3.0 folder whose camera is a ``dtype: image`` feature: PNG bytes in the data parquet, no video."""
    import io

    from PIL import Image

    root = write_v3(root, lengths=lengths, size=size, cams={})
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    cells = []
    for ep, T in enumerate(lengths):
        for img in frames(ep, 0, T, size):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            cells.append({"bytes": buf.getvalue(), "path": None})
    table = table.append_column("observation.image", pa.array(cells, pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
    pq.write_table(table, path)
    info = json.loads((root / "meta/info.json").read_text())
    info["features"]["observation.image"] = {"dtype": "image", "shape": [size, size, 3], "names": ["height", "width", "channel"]}
    (root / "meta/info.json").write_text(json.dumps(info))
    return root
