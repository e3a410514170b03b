"""Read a local LeRobotDataset folder (codebase v3.0, and v2.1/v2.0) into episodes in store keys.

v3.0 layout::

    meta/info.json                      codebase_version, fps, features {name: dtype, shape, names},
                                        totals, data_path / video_path templates
    meta/stats.json  meta/tasks.parquet (task string -> task_index)
    meta/episodes/chunk-XXX/file-XXX.parquet   one row per episode: length, dataset_from_index,
                                        dataset_to_index, data/chunk_index, data/file_index,
                                        videos/<key>/{chunk_index,file_index,from_timestamp,to_timestamp}
    data/chunk-XXX/file-XXX.parquet     many episodes per file, one row per frame
    videos/<key>/chunk-XXX/file-XXX.mp4 many episodes per file; an episode is [from, to) seconds

v2.1: ``meta/episodes.jsonl`` (episode_index, tasks, length), one parquet per episode at
``data/chunk-{episode_chunk}/episode_{episode_index}.parquet`` and one mp4 per episode and camera.

Feature names map to store keys: ``observation.images.<cam>`` -> ``<cam>`` (uint8 H×W×3),
``observation.state`` -> ``state_key``, other ``observation.<x>`` -> ``<x>``, ``action`` ->
``action``, ``next.reward``/``next.success``/``next.done`` -> ``reward``/``success``/``done``;
``rename`` overrides any of these and ``drop`` leaves features out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from robopolicy.data.formats.common import Source, action_bounds, derive_step_flags
from robopolicy.data.video import FrameReader
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import DataError

INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
STEP_FEATURES = {"next.reward": "reward", "next.success": "success", "next.done": "done"}
STEP_DTYPES = {"reward": np.float32, "success": np.bool_, "done": np.bool_}
CAMERA_DTYPES = ("video", "image")


def is_lerobot(path: Path) -> bool:
    return (path / "meta" / "info.json").is_file()


def read_info(root: Path) -> dict:
    path = root / "meta" / "info.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is not readable JSON ({type(e).__name__}); restore the dataset's meta/info.json.") from None
    for key in ("codebase_version", "fps", "features"):
        if key not in info:
            raise DataError(f"{path} has no {key!r} entry, so it is not a LeRobot dataset's info.json; restore the file.")
    version = str(info["codebase_version"])
    if version not in ("v3.0", "v2.1", "v2.0"):
        raise DataError(f"{path} is LeRobot codebase {version}; convert it to v3.0 or v2.1 with LeRobot's converter first.")
    return info


def store_key(name: str, state_key: str, rename: Mapping[str, str]) -> str:
    """The store key a LeRobot feature name maps to (see the module docstring)."""
    if name in rename:
        return str(rename[name])
    if name in STEP_FEATURES:
        return STEP_FEATURES[name]
    if name == "observation.state":
        return state_key
    for prefix in ("observation.images.", "observation."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def read_parquet(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    if not path.is_file():
        raise DataError(f"The data file {path} is missing; restore it from the original dataset.")
    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"The parquet file {path} is unreadable ({type(e).__name__}: truncated or corrupt); restore it from the original dataset.") from None


def column_array(table: pa.Table, name: str, shape: tuple[int, ...], where: Path) -> np.ndarray:
    """A parquet column of (nested) lists or scalars as ``(rows, *shape)`` numpy."""
    if name not in table.column_names:
        raise DataError(f"{where} has no column {name!r}, which meta/info.json lists as a feature; restore the file or drop={[name]}.")
    arr = table.column(name).combine_chunks()
    if arr.null_count:
        raise DataError(f"Column {name!r} of {where} has {arr.null_count} empty values; every frame needs a value.")
    while pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type) or pa.types.is_large_list(arr.type):
        arr = arr.flatten()
    values = arr.to_numpy(zero_copy_only=False)
    per_row = int(np.prod(shape)) if shape else 1
    if values.size != table.num_rows * per_row:
        raise DataError(f"Column {name!r} of {where} holds {values.size} values for {table.num_rows} frames of shape {shape} "
                        "(mismatched lengths); fix the feature's shape in meta/info.json or the data.")
    return values.reshape(table.num_rows, *shape) if shape else values


def _episodes_v3(root: Path) -> list[dict]:
    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not files:
        raise DataError(f"{root} has no meta/episodes/chunk-*/file-*.parquet, which a v3.0 dataset needs; restore the meta folder.")
    rows: list[dict] = []
    for f in files:
        table = read_parquet(f)
        keep = [c for c in table.column_names if not c.startswith("stats/")]
        rows.extend(table.select(keep).to_pylist())
    return sorted(rows, key=lambda r: r["episode_index"])


def _episodes_v2(root: Path) -> list[dict]:
    path = root / "meta" / "episodes.jsonl"
    if not path.is_file():
        raise DataError(f"{root} has no meta/episodes.jsonl, which a v2.1 dataset needs; restore the meta folder.")
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError:
        raise DataError(f"{path} has a line that is not JSON (truncated?); restore the file.") from None
    return sorted(rows, key=lambda r: r["episode_index"])


class LeRobotReader:
    """One LeRobot folder: its features, episodes and a generator of episode dicts in store keys."""

    def __init__(self, root: Path, state_key: str, rename: Mapping[str, str], drop: Sequence[str], success_rule: str):
        self.root, self.info = root, read_info(root)
        user_names = set(rename) | set(drop)
        self.v3 = str(self.info["codebase_version"]) == "v3.0"
        self.fps = float(self.info["fps"])
        self.success_rule = success_rule
        ours = (self.info.get("robopolicy") or {}).get("store_keys") or {}  # key names recorded by our export
        rename = {**{f: k for f, k in ours.items() if f in self.info["features"]}, **rename}
        feats = {k: v for k, v in self.info["features"].items() if k not in INDEX_FEATURES and k not in set(drop)}
        missing = [k for k in set(user_names) if k not in self.info["features"]]
        if missing:
            raise DataError(f"The features {sorted(missing)} named in rename/drop are not in {root}/meta/info.json (it has {sorted(self.info['features'])}); fix the names.")
        if "action" not in feats:
            raise DataError(f"{root}/meta/info.json has no 'action' feature; a policy needs actions, so this dataset cannot be imported.")
        self.cameras = {k: store_key(k, state_key, rename) for k, v in feats.items() if v.get("dtype") in CAMERA_DTYPES}
        self.columns = {k: store_key(k, state_key, rename) for k, v in feats.items()
                        if v.get("dtype") not in CAMERA_DTYPES and v.get("dtype") != "string"}
        self.shapes = {k: self._shape(k, v) for k, v in feats.items() if k in self.cameras or k in self.columns}
        keys = list(self.cameras.values()) + list(self.columns.values())
        if len(set(keys)) != len(keys):
            raise DataError(f"Two features of {root} map to the same store key ({keys}); give one of them another name with rename={{feature: key}}.")
        self.episodes = _episodes_v3(root) if self.v3 else _episodes_v2(root)
        if not self.episodes:
            raise DataError(f"{root} lists no episodes; import a dataset with at least one episode.")
        self._check_episode_columns()
        self.tasks = self._tasks()

    def _check_episode_columns(self) -> None:
        """Every episode row must carry what locating its frames needs (one sentence naming the first gap)."""
        need = ["episode_index", "length"]
        if self.v3:
            need += ["data/chunk_index", "data/file_index"]
            for name, ft in self.info["features"].items():
                if name in self.cameras and ft.get("dtype") == "video":
                    need += [f"videos/{name}/{c}" for c in ("chunk_index", "file_index", "from_timestamp")]
        where = "meta/episodes/*.parquet" if self.v3 else "meta/episodes.jsonl"
        for row in self.episodes:
            missing = [c for c in need if row.get(c) is None]
            if missing:
                raise DataError(f"{self.root}/{where} has no {missing[0]!r} for episode {row.get('episode_index', '?')}; "
                                "restore the episodes metadata (or drop the camera it belongs to).")

    def _shape(self, name: str, ft: Mapping) -> tuple[int, ...]:
        shape = tuple(int(s) for s in ft.get("shape", ()))
        if ft.get("dtype") in CAMERA_DTYPES:
            names = list(ft.get("names") or [])
            if len(shape) != 3:
                raise DataError(f"Camera feature {name!r} has shape {shape} in meta/info.json, not (H, W, 3); fix the feature's shape.")
            if names and names[0] in ("channels", "channel"):
                shape = (shape[1], shape[2], shape[0])
            return shape
        return () if shape == (1,) and name in STEP_FEATURES else shape

    def _tasks(self) -> dict[int, str]:
        path = self.root / "meta" / ("tasks.parquet" if self.v3 else "tasks.jsonl")
        if not path.is_file():
            return {}
        if self.v3:
            table = read_parquet(path)
            names = [c for c in table.column_names if c != "task_index"]
            return dict(zip(table.column("task_index").to_pylist(), table.column(names[0]).to_pylist())) if names else {}
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return {int(r["task_index"]): str(r["task"]) for r in rows}

    # -- the spec ------------------------------------------------------------------------------
    def spec(self) -> EnvSpec:
        obs = {}
        for name, key in self.cameras.items():
            obs[key] = ObsKeySpec(self.shapes[name], "uint8", "rgb")
        for name, key in self.columns.items():
            if name.startswith("observation."):  # other features (not the step flags) become extra store keys
                obs[key] = ObsKeySpec(self.shapes[name], "float32", "lowdim")
        extra = self.info.get("robopolicy") or {}
        lengths = [int(e["length"]) for e in self.episodes]
        low, high = action_bounds(self._all_actions(), extra)
        return EnvSpec(obs=obs, action_dim=len(low), action_low=low, action_high=high,
                       max_episode_steps=int(extra.get("max_episode_steps") or max(lengths)), control_hz=self.fps,
                       name=str(extra.get("name") or self.info.get("robot_type") or self.root.name),
                       extra={"lerobot_features": {v: k for k, v in {**self.cameras, **self.columns}.items()}})

    def extra_keys(self) -> list[str]:
        """Store keys that are neither observations nor the step keys (kept, in their own dtype)."""
        fixed = {"action", "reward", "success", "done"}
        return [k for n, k in self.columns.items() if not n.startswith("observation.") and k not in fixed]

    def _all_actions(self) -> np.ndarray:
        if (self.info.get("robopolicy") or {}).get("action_low") is not None:
            return np.zeros((1, 1), np.float32)  # bounds recorded by our export; the data is not needed
        paths = sorted({self._data_path(e) for e in self.episodes})
        return np.concatenate([column_array(read_parquet(p, ["action"]), "action", self.shapes["action"], p) for p in paths])

    # -- episodes ------------------------------------------------------------------------------
    def _data_path(self, ep: Mapping) -> Path:
        template = self.info.get("data_path") or ("data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet" if self.v3 else
                                                  "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet")
        if self.v3:
            return self.root / template.format(chunk_index=int(ep["data/chunk_index"]), file_index=int(ep["data/file_index"]))
        chunk = int(ep["episode_index"]) // int(self.info.get("chunks_size", 1000))
        return self.root / template.format(episode_chunk=chunk, episode_index=int(ep["episode_index"]))

    def _video(self, ep: Mapping, name: str) -> tuple[Path, int]:
        """(mp4 path, first frame index) of camera ``name`` for episode ``ep``."""
        template = self.info.get("video_path") or ("videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4" if self.v3 else
                                                   "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4")
        if self.v3:
            col = f"videos/{name}/chunk_index"
            path = template.format(video_key=name, chunk_index=int(ep[col]), file_index=int(ep[f"videos/{name}/file_index"]))
            return self.root / path, round(float(ep[f"videos/{name}/from_timestamp"]) * self.fps)
        chunk = int(ep["episode_index"]) // int(self.info.get("chunks_size", 1000))
        return self.root / template.format(video_key=name, episode_chunk=chunk, episode_index=int(ep["episode_index"])), 0

    def iter_episodes(self, notes: set[str]) -> Iterator[dict[str, np.ndarray]]:
        cache: tuple[Path, pa.Table] | None = None
        readers = {name: FrameReader() for name in self.cameras}  # one per stream: each continues where it stopped
        try:
            for ep in self.episodes:
                path = self._data_path(ep)
                if cache is None or cache[0] != path:
                    cache = (path, read_parquet(path))
                table = cache[1]
                if "episode_index" in table.column_names:
                    table = table.filter(pc.equal(table.column("episode_index"), int(ep["episode_index"])))
                if "frame_index" in table.column_names:
                    table = table.sort_by("frame_index")
                T = int(ep["length"])
                if table.num_rows != T:
                    raise DataError(f"{path} holds {table.num_rows} frames of episode {ep['episode_index']} but the episodes metadata says "
                                    f"{T} (mismatched lengths); restore the data file or the metadata.")
                out: dict[str, np.ndarray] = {}
                for name, key in self.columns.items():
                    a = column_array(table, name, self.shapes[name], path)
                    out[key] = a.astype(STEP_DTYPES[key]) if key in STEP_DTYPES else a
                for name, key in self.cameras.items():
                    if self.info["features"][name]["dtype"] == "image":
                        out[key] = _png_column(table, name, path)
                    else:
                        video, start = self._video(ep, name)
                        out[key] = readers[name].read(video, start, T, self.fps)
                    if tuple(out[key].shape[1:]) != self.shapes[name]:
                        raise DataError(f"Camera {name!r} decodes to frames of {tuple(out[key].shape[1:])} but meta/info.json says "
                                        f"{self.shapes[name]}; fix the feature's shape.")
                derive_step_flags(out, T, self.success_rule, notes, "the LeRobot dataset")
                yield out
        finally:
            for r in readers.values():
                r.close()


def _png_column(table: pa.Table, name: str, where: Path) -> np.ndarray:
    """Images stored in parquet (``dtype: image``: structs of PNG/JPEG bytes) as (T, H, W, 3) uint8."""
    import io

    from PIL import Image, UnidentifiedImageError

    out = []
    for cell in table.column(name).to_pylist():
        try:
            out.append(np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB")))
        except (UnidentifiedImageError, OSError, TypeError, KeyError):
            raise DataError(f"An image of {name!r} in {where} cannot be decoded; restore the file.") from None
    return np.stack(out)


def read_lerobot(root: str | Path, state_key: str = "agent_pos", rename: Mapping[str, str] | None = None,
                 drop: Sequence[str] = (), success_rule: str = "last_step") -> Source:
    """A :class:`Source` for the LeRobot folder ``root`` (v3.0 or v2.1)."""
    reader = LeRobotReader(Path(root), state_key, dict(rename or {}), list(drop), success_rule)
    spec = reader.spec()
    n_steps = sum(int(e["length"]) for e in reader.episodes)
    total = reader.info.get("total_frames")
    if total is not None and int(total) != n_steps:
        raise DataError(f"{root}/meta/info.json says total_frames={total} but the episodes add up to {n_steps}; the metadata is inconsistent, restore it.")
    notes: set[str] = set()  # filled while the episodes are read
    ep_tasks = [list(e.get("tasks") or []) for e in reader.episodes]
    provenance = {"source": "lerobot", "path": str(Path(root).resolve()), "codebase_version": reader.info["codebase_version"],
                  "robot_type": reader.info.get("robot_type"), "tasks": reader.tasks, "episode_tasks": ep_tasks,
                  "episode_index": [int(e["episode_index"]) for e in reader.episodes], "extra_keys": reader.extra_keys()}
    return Source("lerobot", str(root), spec, len(reader.episodes), n_steps, reader.fps, lambda: reader.iter_episodes(notes), provenance, notes)
