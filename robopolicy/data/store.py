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
are rewritten whole and atomically, so earlier episodes are never seen half-written.

One writer at a time: ``create`` and ``open(mode="a")`` take the store's exclusive lock
(:mod:`robopolicy.data.store_lock`), held until :meth:`EpisodeStore.close` (or the process ends);
a second writer gets an error naming the holder. Every chunk is written (also all-zero ones) with a
CRC32C, and every open checks that the committed chunks exist (small stores are also decoded in
full, :mod:`robopolicy.data.store_verify`), so damage is an error instead of zeros. Overwriting
deletes only a directory that is a zarr store (:func:`remove_store`).
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import zarr

from robopolicy.data import store_verify
from robopolicy.data._zarr_io import (FORMAT_COMPLETE_CHUNKS, FORMAT_KEY, DurableLocalStore, chunk_shape, create_array,
                                      remove_stale_temp_files, writing)
from robopolicy.data.episode_check import expected_arrays, validate_episode
from robopolicy.data.store_lock import LOCK_NAME, StoreLock
from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import DataError

__all__ = ["EpisodeStore", "expected_arrays", "is_store_dir", "remove_store", "validate_episode"]


def is_store_dir(path: Path) -> bool:
    """Whether ``path`` is a directory that overwriting may delete: a zarr (v3 or v2) store, or
    only the lock and temporary files a killed robopolicy writer leaves."""
    path = Path(path)
    if not path.is_dir():
        return False
    for meta in ("zarr.json", ".zgroup", ".zarray"):
        try:
            doc = json.loads((path / meta).read_text())
            if isinstance(doc, dict) and doc.get("zarr_format") in (2, 3):
                return True
        except (OSError, ValueError):
            pass
    return all(c.name == LOCK_NAME or c.name.endswith((".tmp", ".partial")) for c in path.iterdir())


def _check_overwritable(path: Path) -> None:
    if path.exists() and not is_store_dir(path):
        raise DataError(f"{path} exists and is not a zarr store, so it will not be overwritten; choose another output path or remove it yourself.")


def remove_store(path) -> None:
    """Delete the store at ``path`` (nothing if absent); refuses a non-store or a store being written."""
    path = Path(path)
    if not path.exists():
        return
    _check_overwritable(path)
    lock = StoreLock.acquire(path)  # refuses while another process writes it
    try:
        shutil.rmtree(path)
    finally:
        lock.release()


class EpisodeStore:
    """Episodes on disk; see the module docstring for the layout and the commit protocol.

    Build with :meth:`create` or :meth:`open`, not the constructor.
    """

    def __init__(self, group: zarr.Group, path: Path, mode: str, lock: StoreLock | None = None):
        self._group = group
        self.path = path
        self.mode = mode
        self._lock = lock
        self.spec = EnvSpec.from_dict(dict(group.attrs["env_spec"]))
        prepare = writing if mode == "a" else (lambda a: a)
        self._arrays: dict[str, zarr.Array] = {k: prepare(a) for k, a in group["data"].arrays()}
        self._ends_array: zarr.Array = prepare(group["meta/episode_ends"])
        self._load_committed()

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the write lock (a no-op for read-only stores); the store is read-only afterwards."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.mode = "r"

    def __enter__(self) -> "EpisodeStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path, spec: EnvSpec, attrs: dict | None = None, overwrite: bool = False, fsync: bool = True) -> "EpisodeStore":
        """Make an empty store for ``spec`` at ``path``; ``attrs`` is kept as ``provenance``.

        fsync: make every append durable against power loss (one fsync per file written); without
        it appends are still atomic against a killed process.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise DataError(f"{path} already exists; pass overwrite=True or choose another output path.")
        _check_overwritable(path)
        lock = StoreLock.acquire(path)
        try:
            _check_overwritable(path)  # again under the lock: another process may have written meanwhile
            if not overwrite and any(c.name != LOCK_NAME for c in path.iterdir()):
                raise DataError(f"{path} already exists; pass overwrite=True or choose another output path.")
            for child in path.iterdir():  # the lock folder stays: the lock lives on it
                if child.name != LOCK_NAME:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            root_attrs = {"env_spec": spec.to_dict(), "provenance": dict(attrs or {}), FORMAT_KEY: FORMAT_COMPLETE_CHUNKS,
                          "committed": _commit_record(np.zeros(0, np.int64))}
            group = zarr.open_group(store=DurableLocalStore(path, fsync=fsync), mode="a", attributes=root_attrs)
            group.create_group("data")
            create_array(group, "meta/episode_ends", shape=(0,), chunks=(4096,), dtype="int64")
            for key, (shape, dtype) in expected_arrays(spec).items():
                _create_data_array(group, key, shape, dtype, is_image=key in spec.rgb_keys)
            return cls(group, path, "a", lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def open(cls, path, mode: str = "r", required_keys: list[str] | None = None, fsync: bool = True,
             verify: bool | None = None) -> "EpisodeStore":
        """Open and validate an existing store; ``mode`` is ``"r"`` or ``"a"`` (append).

        Opening for append takes the store's write lock and discards the remains of an append that
        was killed before its commit. Every open checks that the committed chunks exist; ``verify``
        also decodes them all: None does so for stores up to ``store_verify.VERIFY_ON_OPEN_MAX_BYTES``.
        """
        if mode not in ("r", "a"):
            raise DataError(f"Unknown store mode {mode!r}; use mode='r' to read or mode='a' to append.")
        path = Path(path)
        if not path.exists():
            raise DataError(f"No episode store at {path}; check the path or make one with robopolicy-collect.")
        if mode == "a" and not is_store_dir(path):  # checked before the lock folder is made inside it
            raise DataError(f"{path} is not a zarr store; point to a store written by robopolicy-collect.")
        lock = StoreLock.acquire(path) if mode == "a" else None
        try:
            store = cls._open_locked(path, mode, required_keys, fsync, lock)
            if mode == "a":
                store._discard_uncommitted()
            if verify or (verify is None and store_verify.committed_bytes(store) <= store_verify.VERIFY_ON_OPEN_MAX_BYTES):
                store_verify.verify_store(store, decode=True)
            else:
                store_verify.check_chunks_present(store)
            return store
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def _open_locked(cls, path: Path, mode: str, required_keys, fsync: bool, lock: StoreLock | None) -> "EpisodeStore":
        try:
            group = zarr.open_group(store=DurableLocalStore(path, read_only=mode == "r", fsync=fsync), mode="r" if mode == "r" else "r+")
        except Exception as e:  # noqa: BLE001 - zarr raises several types (GroupNotFoundError, ContainsArrayError, JSON errors)
            raise DataError(f"{path} is not a zarr store ({type(e).__name__}); point to a store written by robopolicy-collect.") from None
        try:
            has_layout = "meta/episode_ends" in group and "data" in group and "env_spec" in group.attrs
        except Exception as e:  # noqa: BLE001 - a damaged zarr.json of data/ or meta/ (JSON, Unicode or metadata errors)
            raise DataError(f"{path} has unreadable metadata under data/ or meta/ ({type(e).__name__}); restore the store from a copy or re-create it.") from None
        if not has_layout:
            raise DataError(f"{path} is a zarr group but not an episode store (it needs meta/episode_ends, data/ and an env_spec attribute); point to a store written by robopolicy-collect.")
        try:
            store = cls(group, path, mode, lock)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - KeyError/TypeError/ValueError from a damaged env_spec or commit record
            raise DataError(f"{path} has an unreadable env_spec or commit record ({type(e).__name__}); re-create the store.") from None
        store._validate(required_keys or [])
        return store

    # -- reading --------------------------------------------------------------------------------
    @property
    def complete_chunks(self) -> bool:
        """Whether every chunk of the committed range is written (stores made by this version)."""
        return int(self._group.attrs.get(FORMAT_KEY, 1)) >= FORMAT_COMPLETE_CHUNKS

    def verify(self, decode: bool = True) -> "store_verify.VerifyReport":
        """Check that every committed chunk exists (and decodes); raises StoreCorruptError."""
        return store_verify.verify_store(self, decode=decode)

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
            return self._read(key, lambda: arr[: self.n_steps])
        if isinstance(sl, slice):
            start, stop, step = sl.indices(self.n_steps)
            if step == 1:
                return self._read(key, lambda: arr[start:max(start, stop)])
            sl = np.arange(start, stop, step)
        idx = np.asarray(sl, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_steps):
            raise IndexError(f"step index out of range [0, {self.n_steps})")
        if idx.ndim == 1:
            return self._read(key, lambda: arr.oindex[(idx,)])
        return self._read(key, lambda: arr.oindex[(idx.ravel(),)].reshape(*idx.shape, *arr.shape[1:]))

    def _read(self, key: str, read) -> np.ndarray:
        """Run ``read()``, turning a damaged chunk's decoding failure into one sentence."""
        try:
            return read()
        except Exception as e:  # noqa: BLE001 - zarr/numcodecs raise ValueError, RuntimeError, ... for damaged chunks
            raise store_verify.StoreCorruptError(f"A chunk of data/{key} in {self.path} does not decode ({type(e).__name__}); run robopolicy-verify {self.path} and restore or re-create the store.") from None

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
        return {k: self._read(k, lambda a=a: a[start:stop]) for k, a in self._arrays.items()}

    def iter_episodes(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self.n_episodes):
            yield self.episode(i)

    def __len__(self) -> int:
        return self.n_episodes

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.path)!r}, episodes={self.n_episodes}, steps={self.n_steps}, keys={self.keys})"

    def __reduce__(self):
        # Picklable for DataLoader workers: re-open read-only by path instead of pickling zarr handles
        # (the chunks were verified when this handle was opened: only the presence check again).
        return (EpisodeStore.open, (str(self.path), "r", None, True, False))

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
        ends = np.concatenate([self._ends, np.array([n_steps], dtype=np.int64)])
        assert len(ends) == n_episodes
        self._group.update_attributes({"committed": _commit_record(ends)})
        self._ends = ends

    # -- validation and recovery ----------------------------------------------------------------
    def _load_committed(self) -> None:
        try:
            ends = np.asarray(self._ends_array[:])
        except Exception as e:  # noqa: BLE001 - a damaged chunk of meta/episode_ends
            raise store_verify.StoreCorruptError(f"{self.path}: meta/episode_ends does not decode ({type(e).__name__}); restore the store from a copy or re-create it.") from None
        committed = self._group.attrs.get("committed")
        # Stores written by other tools (no commit record) are taken at their episode_ends.
        n = int(committed["n_episodes"]) if committed is not None else len(ends)
        if n > len(ends):
            raise DataError(f"{self.path} records {n} committed episodes but meta/episode_ends has {len(ends)}; the store is corrupt, re-create it.")
        self._ends = ends[:n].astype(np.int64)
        if committed is not None and self.n_steps != int(committed["n_steps"]):
            raise DataError(f"{self.path} records {committed['n_steps']} committed steps but episode_ends ends at {self.n_steps}; the store is corrupt, re-create it.")
        if committed is not None and "episode_ends_crc32" in committed and _ends_crc32(self._ends) != int(committed["episode_ends_crc32"]):
            raise store_verify.StoreCorruptError(f"{self.path}: meta/episode_ends differs from the committed episode boundaries (checksum mismatch); restore the store from a copy or re-create it.")

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
    return create_array(group, f"data/{key}", shape=(0, *shape), chunks=chunk_shape(shape, dtype, is_image), dtype=dtype)


def _ends_crc32(ends: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(ends, dtype="<i8").tobytes())


def _commit_record(ends: np.ndarray) -> dict:
    """The root attribute whose atomic rewrite commits an append."""
    return {"n_episodes": len(ends), "n_steps": int(ends[-1]) if len(ends) else 0, "episode_ends_crc32": _ends_crc32(ends)}
