"""Episode store on zarr v3: ``data/<key>`` arrays, ``meta/episode_ends``, env spec and provenance.

Layout (a plain zarr v3 group, readable with ``zarr.open_group(path)``)::

    data/<obs key>      (N, ...)   spec dtype (images uint8 HWC, a few frames per chunk)
    data/action         (N, A)     float32
    data/reward         (N,)       float32
    data/success        (N,)       bool
    data/done           (N,)       bool
    meta/episode_ends   (E,)       int64, cumulative
    attrs: env_spec (EnvSpec.to_dict()), provenance (free dict), committed {n_episodes, n_steps}

Crash safety (one commit point): an append first writes the episode's rows past the committed end
of every data array, then ``meta/episode_ends``, and last rewrites the root ``zarr.json`` with the
new ``committed`` counts. Every file write is temp (+ fsync) + rename (``DurableLocalStore``), so
the root ``zarr.json`` is replaced in one atomic step: that replacement *is* the commit. Readers use only
the committed counts; whatever lies beyond them (a killed append) is ignored and is truncated when
the store is next opened for appending. Chunks shared by the last committed episode and the new one
are rewritten whole and atomically, so earlier episodes are never seen half-written. One writer at
a time.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import zarr

from robopolicy.data._zarr_io import DurableLocalStore, chunk_shape, remove_stale_temp_files
from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import DataError

STEP_KEYS = ("action", "reward", "success", "done")


def expected_arrays(spec: EnvSpec) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """key -> (per-step shape, dtype) of every array an episode of ``spec`` must have."""
    out = {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in spec.obs.items()}
    out["action"] = ((spec.action_dim,), np.dtype("float32"))
    out["reward"] = ((), np.dtype("float32"))
    out["success"] = ((), np.dtype("bool"))
    out["done"] = ((), np.dtype("bool"))
    return out


def validate_episode(episode: Mapping[str, Any], expected: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> dict[str, np.ndarray]:
    """Check an episode dict against ``expected`` and return it as arrays cast to the stored dtypes.

    episode: key -> (T, *shape) for every expected key. Raises DataError naming the first problem.
    """
    missing = [k for k in expected if k not in episode]
    if missing:
        raise DataError(f"The episode lacks key(s) {missing} that the store needs; include every key of {sorted(expected)}.")
    extra = sorted(set(episode) - set(expected))
    if extra:
        raise DataError(f"The episode has key(s) {extra} that the store does not hold; drop them or add them to the env spec.")
    arrays = {k: np.asarray(episode[k]) for k in expected}
    lengths = {k: (a.shape[0] if a.ndim else 0) for k, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"The episode's arrays have different lengths {lengths}; every key needs one row per step.")
    if next(iter(lengths.values())) < 1:
        raise DataError("The episode has no steps; append episodes with at least one step.")
    out = {}
    for k, a in arrays.items():
        shape, dtype = expected[k]
        if tuple(a.shape[1:]) != shape:
            raise DataError(f"Episode key {k!r} has per-step shape {tuple(a.shape[1:])} but the store expects {shape}; fix the recorder or the env spec.")
        if dtype == np.uint8 and a.dtype != np.uint8:
            raise DataError(f"Episode key {k!r} has dtype {a.dtype} but images are stored as uint8; convert it with .astype(np.uint8).")
        if dtype.kind == "f":
            if not np.issubdtype(a.dtype, np.number) and a.dtype != np.bool_:
                raise DataError(f"Episode key {k!r} has dtype {a.dtype}, not numbers; record float values.")
            if not np.all(np.isfinite(a)):
                raise DataError(f"Episode key {k!r} contains NaN or infinite values; fix the recorder or drop this episode.")
        out[k] = a.astype(dtype, copy=False)
    return out


class EpisodeStore:
    """Episodes on disk; see the module docstring for the layout and the commit protocol.

    Build with :meth:`create` or :meth:`open`, not the constructor.
    """

    def __init__(self, group: zarr.Group, path: Path, mode: str):
        self._group = group
        self.path = path
        self.mode = mode
        self.spec = EnvSpec.from_dict(dict(group.attrs["env_spec"]))
        self._arrays: dict[str, zarr.Array] = {k: a for k, a in group["data"].arrays()}
        self._ends_array: zarr.Array = group["meta/episode_ends"]
        self._load_committed()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path, spec: EnvSpec, attrs: dict | None = None, overwrite: bool = False, fsync: bool = True) -> "EpisodeStore":
        """Make an empty store for ``spec`` at ``path``; ``attrs`` is kept as ``provenance``.

        fsync: make every append durable against power loss (one fsync per file written); without
        it appends are still atomic against a killed process.
        """
        path = Path(path)
        if path.exists():
            if not overwrite:
                raise DataError(f"{path} already exists; pass overwrite=True or choose another output path.")
            if path.is_file() or (any(path.iterdir()) and not (path / "zarr.json").exists()):
                raise DataError(f"{path} exists and is not a zarr store, so it will not be overwritten; choose another output path.")
            shutil.rmtree(path)
        root_attrs = {"env_spec": spec.to_dict(), "provenance": dict(attrs or {}), "committed": {"n_episodes": 0, "n_steps": 0}}
        group = zarr.open_group(store=DurableLocalStore(path, fsync=fsync), mode="w", attributes=root_attrs)
        group.create_group("data")
        group.create_array("meta/episode_ends", shape=(0,), chunks=(4096,), dtype="int64", fill_value=0)
        for key, (shape, dtype) in expected_arrays(spec).items():
            _create_data_array(group, key, shape, dtype, is_image=key in spec.rgb_keys)
        return cls(group, path, "a")

    @classmethod
    def open(cls, path, mode: str = "r", required_keys: list[str] | None = None, fsync: bool = True) -> "EpisodeStore":
        """Open and validate an existing store; ``mode`` is ``"r"`` or ``"a"`` (append).

        Opening for append also discards the remains of an append that was killed before its commit.
        """
        if mode not in ("r", "a"):
            raise DataError(f"Unknown store mode {mode!r}; use mode='r' to read or mode='a' to append.")
        path = Path(path)
        if not path.exists():
            raise DataError(f"No episode store at {path}; check the path or make one with robopolicy-collect.")
        try:
            group = zarr.open_group(store=DurableLocalStore(path, read_only=mode == "r", fsync=fsync), mode="r" if mode == "r" else "r+")
        except Exception as e:  # zarr raises several types (GroupNotFoundError, ContainsArrayError, JSON errors)
            raise DataError(f"{path} is not a zarr store ({type(e).__name__}); point to a store written by robopolicy-collect.") from None
        if "meta/episode_ends" not in group or "data" not in group or "env_spec" not in group.attrs:
            raise DataError(f"{path} is a zarr group but not an episode store (it needs meta/episode_ends, data/ and an env_spec attribute); point to a store written by robopolicy-collect.")
        try:
            store = cls(group, path, mode)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path} has an unreadable env_spec or commit record ({e}); re-create the store.") from None
        store._validate(required_keys or [])
        if mode == "a":
            store._discard_uncommitted()
        return store

    # -- reading --------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        """The provenance dict (command, time, versions, ...)."""
        return dict(self._group.attrs.get("provenance", {}))

    @property
    def keys(self) -> list[str]:
        return sorted(self._arrays)

    @property
    def n_episodes(self) -> int:
        return len(self._ends)

    @property
    def n_steps(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    @property
    def episode_ends(self) -> np.ndarray:
        """(E,) int64 cumulative step counts of the committed episodes."""
        return self._ends.copy()

    def array(self, key: str) -> zarr.Array:
        """The raw zarr array for ``key`` (may hold uncommitted rows past ``n_steps``)."""
        if key not in self._arrays:
            raise DataError(f"The store has no key {key!r} (it has {self.keys}); use one of those keys.")
        return self._arrays[key]

    def get(self, key: str, sl: slice | np.ndarray | None = None) -> np.ndarray:
        """Rows of ``key`` over committed steps: all (None), a slice, or an integer index array."""
        arr = self.array(key)
        if sl is None:
            return arr[: self.n_steps]
        if isinstance(sl, slice):
            start, stop, step = sl.indices(self.n_steps)
            if step == 1:
                return arr[start:max(start, stop)]
            sl = np.arange(start, stop, step)
        idx = np.asarray(sl, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_steps):
            raise IndexError(f"step index out of range [0, {self.n_steps})")
        return arr.oindex[(idx,)] if idx.ndim == 1 else arr.oindex[(idx.ravel(),)].reshape(*idx.shape, *arr.shape[1:])

    def episode_range(self, i: int) -> tuple[int, int]:
        """(start, stop) steps of episode ``i`` (negative counts from the end)."""
        n = self.n_episodes
        if not -n <= i < n:
            raise IndexError(f"episode {i} out of range for {n} episodes")
        i %= n
        return (int(self._ends[i - 1]) if i else 0), int(self._ends[i])

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """Every key of episode ``i`` as arrays ``(T, ...)``."""
        start, stop = self.episode_range(i)
        return {k: a[start:stop] for k, a in self._arrays.items()}

    def iter_episodes(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self.n_episodes):
            yield self.episode(i)

    def __len__(self) -> int:
        return self.n_episodes

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.path)!r}, episodes={self.n_episodes}, steps={self.n_steps}, keys={self.keys})"

    def __reduce__(self):
        # Picklable for DataLoader workers: re-open read-only by path instead of pickling zarr handles.
        return (EpisodeStore.open, (str(self.path), "r"))

    # -- writing --------------------------------------------------------------------------------
    def append_episode(self, episode: Mapping[str, Any]) -> None:
        """Validate and append one episode (key -> (T, ...)); atomic, see the module docstring."""
        if self.mode != "a":
            raise DataError(f"The store {self.path} is open read-only; open it with mode='a' to append.")
        expected = {k: (tuple(a.shape[1:]), a.dtype) for k, a in self._arrays.items()}
        if self.n_episodes == 0:
            # Extra keys (e.g. float64 simulator states) may be added, in their own dtype, with the first episode.
            for k in set(episode) - set(expected):
                a = np.asarray(episode[k])
                expected[k] = (tuple(a.shape[1:]), a.dtype)
        arrays = validate_episode(episode, expected)
        for k in set(arrays) - set(self._arrays):
            shape, dtype = expected[k]
            self._arrays[k] = _create_data_array(self._group, k, shape, dtype, is_image=dtype == np.uint8 and len(shape) == 3)
        start = self.n_steps
        stop = start + len(next(iter(arrays.values())))
        for k, a in arrays.items():
            self._write_rows(k, start, a)
        n = self.n_episodes
        self._ends_array.resize((n + 1,))
        self._ends_array[n] = stop
        self._commit(n + 1, stop)

    def update_attrs(self, provenance: Mapping[str, Any]) -> None:
        """Merge ``provenance`` into the stored provenance dict (one atomic write)."""
        if self.mode != "a":
            raise DataError(f"The store {self.path} is open read-only; open it with mode='a' to change its attributes.")
        self._group.update_attributes({"provenance": {**self.attrs, **dict(provenance)}})

    def _write_rows(self, key: str, start: int, rows: np.ndarray) -> None:
        arr = self._arrays[key]
        arr.resize((start + len(rows), *arr.shape[1:]))
        arr[start : start + len(rows)] = rows

    def _commit(self, n_episodes: int, n_steps: int) -> None:
        """The commit point: one atomic rewrite of the root zarr.json."""
        self._group.update_attributes({"committed": {"n_episodes": int(n_episodes), "n_steps": int(n_steps)}})
        self._ends = np.concatenate([self._ends, np.array([n_steps], dtype=np.int64)])

    # -- validation and recovery ----------------------------------------------------------------
    def _load_committed(self) -> None:
        ends = np.asarray(self._ends_array[:])
        committed = self._group.attrs.get("committed")
        # Stores written by other tools (no commit record) are taken at their episode_ends.
        n = int(committed["n_episodes"]) if committed is not None else len(ends)
        if n > len(ends):
            raise DataError(f"{self.path} records {n} committed episodes but meta/episode_ends has {len(ends)}; the store is corrupt, re-create it.")
        self._ends = ends[:n].astype(np.int64)
        if committed is not None and self.n_steps != int(committed["n_steps"]):
            raise DataError(f"{self.path} records {committed['n_steps']} committed steps but episode_ends ends at {self.n_steps}; the store is corrupt, re-create it.")

    def _validate(self, required_keys: list[str]) -> None:
        if not np.issubdtype(self._ends_array.dtype, np.integer):
            raise DataError(f"{self.path}: meta/episode_ends has dtype {self._ends_array.dtype}, not integers; re-create the store.")
        if len(self._ends) and (self._ends[0] <= 0 or np.any(np.diff(self._ends) <= 0)):
            raise DataError(f"{self.path}: meta/episode_ends is not strictly increasing; the store is corrupt, re-create it.")
        expected = expected_arrays(self.spec)
        for k in list(expected) + [k for k in required_keys if k not in expected]:
            if k not in self._arrays:
                raise DataError(f"{self.path} has no data/{k} array, which is needed (it has {self.keys}); record it or use a store that has it.")
        for k, arr in self._arrays.items():
            if arr.shape[0] < self.n_steps:
                raise DataError(f"{self.path}: data/{k} has {arr.shape[0]} rows but the episodes cover {self.n_steps} steps (ragged lengths); re-create the store.")
            if k in expected:
                shape, dtype = expected[k]
                if arr.dtype != dtype:
                    raise DataError(f"{self.path}: data/{k} has dtype {arr.dtype} but the env spec says {dtype}; re-create the store or fix its env_spec.")
                if tuple(arr.shape[1:]) != shape:
                    raise DataError(f"{self.path}: data/{k} has per-step shape {tuple(arr.shape[1:])} but the env spec says {shape}; re-create the store or fix its env_spec.")

    def _discard_uncommitted(self) -> None:
        """Truncate rows and episode_ends entries past the commit and remove stale temp files."""
        remove_stale_temp_files(self.path)
        if self.n_episodes == 0:  # extra keys made by a killed first append are not part of the store yet
            for k in set(self._arrays) - set(expected_arrays(self.spec)):
                del self._group[f"data/{k}"]
                del self._arrays[k]
        for arr in self._arrays.values():
            if arr.shape[0] > self.n_steps:
                arr.resize((self.n_steps, *arr.shape[1:]))
        if self._ends_array.shape[0] > self.n_episodes:
            self._ends_array.resize((self.n_episodes,))


def _create_data_array(group: zarr.Group, key: str, shape: tuple[int, ...], dtype: np.dtype, is_image: bool) -> zarr.Array:
    """An empty ``data/<key>`` array of ``(0, *shape)``, chunked along time."""
    if "/" in key or key.startswith("."):
        raise DataError(f"Key {key!r} cannot be a store array name; use a key without '/' or a leading '.'.")
    return group.create_array(f"data/{key}", shape=(0, *shape), chunks=chunk_shape(shape, dtype, is_image), dtype=dtype, fill_value=0)
