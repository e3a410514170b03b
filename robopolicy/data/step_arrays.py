"""The store's steps read once: per-key arrays that every training dataset and the normalizer fit share.

:class:`StepArrays` reads the keys a training run needs from an
:class:`~robopolicy.data.store.EpisodeStore` once, at training start: low-dim keys (and images
that fit, ``read="auto"``: under 2 GiB; or all of them, ``read="memory"``) into memory, other
images streamed from zarr (``read="lazy"``) through a bounded :class:`ChunkCache` of decoded
chunks. The train and validation :class:`~robopolicy.data.windows.WindowDataset` (or
:class:`~robopolicy.value.dataset.TransitionDataset`) index the same arrays by step, and
:func:`~robopolicy.data.normalize.fit_normalizer` reads its statistics from them (``StepArrays``
answers ``spec``, ``get`` and ``episode_range`` like the store), so nothing is read or copied
twice. Safe with DataLoader workers: the store is re-opened by path in each process.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from robopolicy.data.store import EpisodeStore
from robopolicy.errors import ConfigError, DataError

IMAGE_CACHE_LIMIT_BYTES = 2 * 1024**3
READ_MODES = ("auto", "memory", "lazy")


class ChunkCache:
    """Chunk-aligned reads of one store key through a bounded LRU cache of decoded chunks.

    ``rows(steps)`` -> the rows ``steps`` (global step indices) of ``key``; a cache miss reads the
    whole zarr chunk holding a step with ``store.get(key, slice)``. At most ``max_bytes`` of decoded
    chunks are kept (at least one chunk).
    """

    def __init__(self, store: EpisodeStore, key: str, max_bytes: int):
        self.key = key
        self.chunk_len = int(store.array(key).chunks[0])
        self.n_steps = int(store.n_steps)
        self.max_bytes = int(max_bytes)
        self._chunks: OrderedDict[int, np.ndarray] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    def _chunk(self, store: EpisodeStore, c: int) -> np.ndarray:
        arr = self._chunks.get(c)
        if arr is not None:
            self._chunks.move_to_end(c)
            self.hits += 1
            return arr
        self.misses += 1
        arr = store.get(self.key, slice(c * self.chunk_len, min((c + 1) * self.chunk_len, self.n_steps)))
        self._chunks[c] = arr
        self.bytes += arr.nbytes
        while self.bytes > self.max_bytes and len(self._chunks) > 1:
            _, old = self._chunks.popitem(last=False)
            self.bytes -= old.nbytes
        return arr

    def rows(self, store: EpisodeStore, steps: np.ndarray) -> np.ndarray:
        steps = np.asarray(steps, dtype=np.int64)
        chunk_ids = steps // self.chunk_len
        first = self._chunk(store, int(chunk_ids[0]))
        out = np.empty((len(steps), *first.shape[1:]), dtype=first.dtype)
        for c in np.unique(chunk_ids):
            sel = chunk_ids == c
            out[sel] = self._chunk(store, int(c))[steps[sel] - int(c) * self.chunk_len]
        return out


class StepArrays:
    """Rows ``(n_steps, ...)`` of ``keys`` of one store, read once; images in memory or streamed per ``read``.

    ``rows(key, steps)``: (n,) global step indices -> (n, ...) rows. ``get(key, rows)`` and
    ``episode_range(i)`` answer like the store's, for :func:`~robopolicy.data.normalize.fit_normalizer`.
    """

    def __init__(self, store: EpisodeStore | str | os.PathLike, keys: Sequence[str], read: str = "auto",
                 cache_bytes: int = 256 * 1024**2):
        store = store if isinstance(store, EpisodeStore) else EpisodeStore.open(store)
        if read not in READ_MODES:
            raise ConfigError(f"Unknown read={read!r}; use one of {', '.join(READ_MODES)}.")
        self.keys = sorted(set(keys))
        missing = [k for k in self.keys if k not in store.keys]
        if missing:
            raise DataError(f"The store {store.path} has no key(s) {missing} (it has {store.keys}); choose obs keys the store holds.")
        self.spec, self.path = store.spec, Path(store.path)
        self.episode_ends, self.n_episodes, self.n_steps = store.episode_ends, store.n_episodes, store.n_steps
        image_keys = [k for k in self.keys if store.array(k).dtype == np.uint8 and store.array(k).ndim == 4]
        image_bytes = sum(store.n_steps * int(np.prod(store.array(k).shape[1:])) for k in image_keys)
        self.images_in_memory = image_bytes < IMAGE_CACHE_LIMIT_BYTES if read == "auto" else read == "memory"
        self.cache_bytes = int(cache_bytes)
        self._memory = {k: store.get(k) for k in self.keys if k not in image_keys or self.images_in_memory}
        self.lazy_keys = [k for k in self.keys if k not in self._memory]
        self._caches: dict[str, ChunkCache] = {}
        self._store, self._pid = (store, os.getpid()) if self.lazy_keys else (None, None)

    def require(self, keys: Sequence[str], what: str) -> None:
        """Raise a DataError naming ``what`` when any of ``keys`` was not read."""
        missing = sorted(set(keys) - set(self.keys))
        if missing:
            raise DataError(f"The {what} needs key(s) {missing} that were not read from {self.path} (read: {self.keys}); "
                            "read every key the datasets use.")

    def rows(self, key: str, steps: np.ndarray) -> np.ndarray:
        """steps: (n,) global step indices (possibly repeated) -> (n, ...) rows of ``key``."""
        if key in self._memory:
            return self._memory[key][steps]
        store = self._open_store()
        cache = self._caches.get(key)
        if cache is None:
            cache = self._caches[key] = ChunkCache(store, key, self.cache_bytes)
        return cache.rows(store, steps)

    def get(self, key: str, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """All rows of ``key`` (None), a slice or an index array, like :meth:`EpisodeStore.get`; memory keys are views for slices."""
        self.require([key], "read")
        if key not in self._memory:
            return self._open_store().get(key, rows)
        arr = self._memory[key]
        return arr if rows is None else arr[rows]

    def episode_range(self, i: int) -> tuple[int, int]:
        """(start, stop) steps of episode ``i``."""
        if not 0 <= int(i) < self.n_episodes:
            raise IndexError(f"episode {i} out of range for {self.n_episodes} episodes")
        return (int(self.episode_ends[i - 1]) if i else 0), int(self.episode_ends[i])

    def _open_store(self) -> EpisodeStore:
        if self._store is None or self._pid != os.getpid():
            self._store, self._pid = EpisodeStore.open(self.path), os.getpid()
            self._caches = {}
        return self._store

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_store"], state["_pid"] = None, None  # workers re-open by path; zarr handles stay local
        state["_caches"] = {}
        return state
