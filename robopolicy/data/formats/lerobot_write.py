"""Write an episode store as a LeRobotDataset v3.0 folder (layout in ``lerobot_read``).

Cameras become ``observation.images.<key>`` video features (AV1 by default, SVT-AV1 yuv420p, many
episodes per mp4, each episode encoded on its own, so it starts at a key frame, and appended by
packet copy at its own ``[from_timestamp, to_timestamp)``); the low-dim key
becomes ``observation.state`` (several: ``observation.<key>``, ``state_key`` picks the one for
``observation.state``); ``reward``/``success``/``done`` become ``next.reward``/``next.success``/
``next.done``; other numeric store keys keep their name. Data and video files roll over to the
next ``file-XXX`` (between episodes) when the next episode would take them past ``data_file_mb`` /
``video_file_mb``. ``info.json`` carries a
``robopolicy`` entry (action bounds, episode limit, store key names) that our importer reads back,
so an export -> import round trip gives the same keys and spec.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robopolicy.data.store import EpisodeStore
from robopolicy.data.video import ConcatVideoWriter, encode_video
from robopolicy.errors import DataError
from robopolicy.utils import atomic_write_json

CHUNKS_SIZE = 1000  # LeRobot's files per chunk folder
STEP_NAMES = {"reward": "next.reward", "success": "next.success", "done": "next.done"}
IMAGE_STAT_FRAMES = 64  # frames per episode sampled for image statistics
IMAGE_STAT_PIXELS = 100_000  # pixels per episode kept from those frames


def feature_names(store: EpisodeStore, state_key: str | None) -> dict[str, str]:
    """store key -> LeRobot feature name."""
    spec = store.spec
    known = dict(spec.extra.get("lerobot_features") or {})
    lowdim = spec.lowdim_keys
    if state_key is not None and state_key not in lowdim:
        raise DataError(f"state_key={state_key!r} is not a low-dimensional key of the store (it has {lowdim}); pick one of those.")
    state = state_key or (lowdim[0] if len(lowdim) == 1 else None)
    names = {}
    for k in store.keys:
        if k in known:
            names[k] = known[k]
        elif k in spec.rgb_keys:
            names[k] = f"observation.images.{k}"
        elif k in lowdim:
            names[k] = "observation.state" if k == state else f"observation.{k}"
        else:
            names[k] = STEP_NAMES.get(k, k)
    return names


def _column(a: np.ndarray) -> pa.Array:
    """(T, ...) numpy -> an arrow column of nested fixed-size lists (scalars for (T,))."""
    arr = pa.array(np.ascontiguousarray(a).reshape(-1))
    for size in reversed(a.shape[1:]):
        arr = pa.FixedSizeListArray.from_arrays(arr, int(size))
    return arr


class _Stats:
    """Running min / max / mean / std / count of one feature over axis 0 (images: per channel in [0, 1])."""

    def __init__(self):
        self.n, self.sum, self.sq, self.min, self.max = 0, 0.0, 0.0, None, None

    def add(self, x: np.ndarray) -> None:
        x = x.astype(np.float64)
        self.n += len(x)
        self.sum = self.sum + x.sum(0)
        self.sq = self.sq + (x * x).sum(0)
        self.min = x.min(0) if self.min is None else np.minimum(self.min, x.min(0))
        self.max = x.max(0) if self.max is None else np.maximum(self.max, x.max(0))

    def as_dict(self) -> dict:
        mean = self.sum / self.n
        std = np.sqrt(np.maximum(self.sq / self.n - mean * mean, 0.0))
        return {"min": np.atleast_1d(self.min).tolist(), "max": np.atleast_1d(self.max).tolist(), "mean": np.atleast_1d(mean).tolist(),
                "std": np.atleast_1d(std).tolist(), "count": [int(self.n)]}


def _image_sample(frames: np.ndarray) -> np.ndarray:
    """Pixels ``(n, 3)`` in [0, 1] from up to IMAGE_STAT_FRAMES frames, at most IMAGE_STAT_PIXELS of them."""
    idx = np.linspace(0, len(frames) - 1, min(len(frames), IMAGE_STAT_FRAMES)).astype(int)
    pixels = frames[idx].reshape(-1, frames.shape[-1])
    return pixels[:: max(1, len(pixels) // IMAGE_STAT_PIXELS)].astype(np.float32) / 255.0


def _tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet: task_index with the task strings as the (pandas) index named ``task``.

    LeRobot reads this file with pandas and takes the task strings from the DataFrame index; pandas
    is not a dependency here, so the index is declared through the pandas schema metadata by hand.
    """
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    meta = {"index_columns": ["task"], "column_indexes": [], "creator": {"library": "pyarrow", "version": pa.__version__},
            "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
                        {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None}]}
    return table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()})


def _episode_tasks(store: EpisodeStore) -> tuple[list[str], list[list[str]]]:
    prov = store.attrs
    per_ep = prov.get("episode_tasks")
    if isinstance(per_ep, list) and len(per_ep) == store.n_episodes and all(per_ep):
        tasks = list(dict.fromkeys(t for ts in per_ep for t in ts))
        return tasks, [list(ts) for ts in per_ep]
    name = store.spec.name or "task"
    return [name], [[name]] * store.n_episodes


def _next_file(chunk: int, file: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file == CHUNKS_SIZE - 1 else (chunk, file + 1)


def write_lerobot(store: EpisodeStore, root: Path, codec: str = "av1", crf: int = 30, preset: int | None = None,
                  state_key: str | None = None, data_file_mb: float = 100.0, video_file_mb: float = 500.0, progress: bool = True) -> None:
    from tqdm import tqdm

    root = Path(root)
    spec, fps = store.spec, float(store.spec.control_hz)
    names = feature_names(store, state_key)
    cams = [k for k in store.keys if k in spec.rgb_keys]
    cols = [k for k in store.keys if k not in cams and (np.issubdtype(store.array(k).dtype, np.number) or store.array(k).dtype == np.bool_)]
    tasks, ep_tasks = _episode_tasks(store)
    task_index = {t: i for i, t in enumerate(tasks)}
    stats = {k: _Stats() for k in cams + cols}
    data_loc, data_writer, data_bytes = (0, 0), None, 0
    video_loc = {k: (0, 0) for k in cams}
    videos: dict[str, ConcatVideoWriter] = {}
    episodes, index = [], 0
    try:
        for i in tqdm(range(store.n_episodes), desc="export", unit="episode", disable=not progress, leave=False):
            ep = store.episode(i)
            T = len(ep["action"])
            row = {"episode_index": i, "tasks": ep_tasks[i], "length": T, "dataset_from_index": index, "dataset_to_index": index + T,
                   "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            table = {names[k]: _column(ep[k]) for k in cols}
            table.update(timestamp=pa.array(np.arange(T, dtype=np.float32) / np.float32(fps)), frame_index=pa.array(np.arange(T, dtype=np.int64)),
                         episode_index=pa.array(np.full(T, i, np.int64)), index=pa.array(np.arange(index, index + T, dtype=np.int64)),
                         task_index=pa.array(np.full(T, task_index[ep_tasks[i][0]], np.int64)))
            table = pa.table(table)
            if data_writer is not None and data_bytes + table.nbytes > data_file_mb * 2**20:
                data_writer.close()
                data_writer, data_bytes, data_loc = None, 0, _next_file(*data_loc)
            if data_writer is None:
                path = root / f"data/chunk-{data_loc[0]:03d}/file-{data_loc[1]:03d}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                data_writer = pq.ParquetWriter(path, table.schema)
            data_writer.write_table(table)
            data_bytes += table.nbytes
            row["data/chunk_index"], row["data/file_index"] = data_loc
            for k in cols:
                stats[k].add(ep[k].reshape(T, -1) if ep[k].ndim > 1 else ep[k])
                s = stats_one(ep[k])
                row.update({f"stats/{names[k]}/{n}": v for n, v in s.items()})
            for k in cams:
                segment = root / f".segment.{k}.mp4"  # this episode alone; appended to the camera's file below
                encode_video(segment, ep[k], fps, codec=codec, crf=crf, preset=preset)
                w = videos.get(k)
                if w is not None and w.nbytes + segment.stat().st_size > video_file_mb * 2**20:
                    w.close()
                    del videos[k]
                    video_loc[k] = _next_file(*video_loc[k])
                if k not in videos:
                    path = root / f"videos/{names[k]}/chunk-{video_loc[k][0]:03d}/file-{video_loc[k][1]:03d}.mp4"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    videos[k] = ConcatVideoWriter(path)
                start = videos[k].append(segment, fps)
                segment.unlink()
                stats[k].add(_image_sample(ep[k]))
                row.update({f"videos/{names[k]}/chunk_index": video_loc[k][0], f"videos/{names[k]}/file_index": video_loc[k][1],
                            f"videos/{names[k]}/from_timestamp": start / fps, f"videos/{names[k]}/to_timestamp": (start + T) / fps})
            episodes.append(row)
            index += T
    finally:
        if data_writer is not None:
            data_writer.close()
        for w in videos.values():
            w.close()
    ep_path = root / "meta/episodes/chunk-000/file-000.parquet"
    ep_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episodes), ep_path)
    pq.write_table(_tasks_table(tasks), root / "meta/tasks.parquet")
    atomic_write_json(root / "meta/stats.json", {names[k]: _image_stats(v) if k in cams else v.as_dict() for k, v in stats.items()})
    atomic_write_json(root / "meta/info.json", _info(store, names, cams, cols, codec, fps, index, len(tasks), data_file_mb, video_file_mb))


def stats_one(a: np.ndarray) -> dict:
    s = _Stats()
    s.add(a.reshape(len(a), -1) if a.ndim > 1 else a)
    return s.as_dict()


def _image_stats(s: _Stats) -> dict:
    """LeRobot's image statistics are per channel, shaped (3, 1, 1), in [0, 1]."""
    d = s.as_dict()
    return {k: ([[[x]] for x in v] if k != "count" else v) for k, v in d.items()}


def _info(store: EpisodeStore, names, cams, cols, codec, fps, n_frames, n_tasks, data_mb, video_mb) -> dict:
    spec = store.spec
    features = {}
    for k in cams:
        H, W, C = spec.obs[k].shape
        features[names[k]] = {"dtype": "video", "shape": [H, W, C], "names": ["height", "width", "channels"],
                              "info": {"video.height": H, "video.width": W, "video.codec": codec, "video.pix_fmt": "yuv420p",
                                       "video.is_depth_map": False, "video.fps": fps, "video.channels": C, "has_audio": False}}
    for k in cols:
        a = store.array(k)
        shape = list(a.shape[1:]) or [1]
        features[names[k]] = {"dtype": str(a.dtype), "shape": shape, "names": None}
    for n, dt in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"), ("task_index", "int64")):
        features[n] = {"dtype": dt, "shape": [1], "names": None}
    return {"codebase_version": "v3.0", "robot_type": None, "total_episodes": store.n_episodes, "total_frames": int(n_frames),
            "total_tasks": n_tasks, "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": data_mb, "video_files_size_in_mb": video_mb,
            "fps": fps, "splits": {"train": f"0:{store.n_episodes}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4" if cams else None,
            "features": features,
            "robopolicy": {"action_low": list(spec.action_low), "action_high": list(spec.action_high), "name": spec.name,
                           "max_episode_steps": spec.max_episode_steps, "store_keys": {v: k for k, v in names.items()}}}
