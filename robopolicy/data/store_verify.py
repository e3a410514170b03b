"""Check that every committed chunk of an episode store is on disk and decodes.

zarr reads a missing chunk file as the fill value, so a deleted ``data/action`` chunk would
otherwise train on zeros. Two levels:

* :func:`check_chunks_present` stats the chunk files covering the committed range of every array
  (cheap, done on every open);
* :func:`verify_store` additionally reads and decodes each of those chunks (zstd + CRC32C, so a
  truncated, emptied, garbage or bit-flipped chunk is an error), done on open for stores up to
  :data:`VERIFY_ON_OPEN_MAX_BYTES` and by ``robopolicy-verify PATH`` for any store.

Stores written before chunks were always written (no ``store_format`` >= 2 record) may lack
chunks that zarr skipped because they held only zeros; for those an absent chunk is counted as
unverifiable instead of being an error.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import zarr

from robopolicy.errors import DataError

if TYPE_CHECKING:
    from robopolicy.data.store import EpisodeStore

# Stores whose committed arrays hold at most this many (uncompressed) bytes are fully decoded
# every time they are opened; larger ones only get the presence check (use robopolicy-verify).
VERIFY_ON_OPEN_MAX_BYTES = 64 * 2**20


class StoreCorruptError(DataError):
    """A committed chunk of the store is missing or does not decode."""


@dataclasses.dataclass
class VerifyReport:
    path: str
    episodes: int
    steps: int
    arrays: int
    chunks: int             # chunk files covering the committed range
    chunks_decoded: int     # of those, read and decoded (0 when only presence was checked)
    bytes_decoded: int      # uncompressed bytes read
    unverifiable: int       # absent chunks of a store older than complete-chunk writing
    seconds: float

    def summary(self) -> str:
        text = (f"{self.path}: ok, {self.episodes} episodes, {self.steps} steps, {self.arrays} arrays, "
                f"{self.chunks_decoded}/{self.chunks} chunks decoded ({self.bytes_decoded / 2**20:.1f} MiB) in {self.seconds:.2f} s")
        if self.unverifiable:
            text += (f"; {self.unverifiable} chunk files are absent, which this store's format allows for all-zero chunks, "
                     "so they could not be verified (re-create the store to verify every chunk)")
        return text


def _committed_arrays(store: "EpisodeStore") -> Iterator[tuple[str, zarr.Array, int]]:
    """(name, array, committed rows) for meta/episode_ends and every data array."""
    yield "meta/episode_ends", store._ends_array, store.n_episodes
    for key in store.keys:
        yield f"data/{key}", store.array(key), store.n_steps


def _chunk_coords(arr: zarr.Array, rows: int) -> Iterator[tuple[int, ...]]:
    """Grid coordinates of the chunks that hold rows ``[0, rows)`` of ``arr``."""
    grid = arr.cdata_shape
    first = range(math.ceil(rows / arr.chunks[0])) if rows else range(0)
    return itertools.product(first, *(range(n) for n in grid[1:]))


def check_chunks_present(store: "EpisodeStore") -> tuple[int, int]:
    """Raise StoreCorruptError for an absent committed chunk; returns (chunks, unverifiable)."""
    n = absent = 0
    for name, arr, rows in _committed_arrays(store):
        folder = Path(store.path) / arr.path
        for coords in _chunk_coords(arr, rows):
            n += 1
            if (folder / arr.metadata.encode_chunk_key(coords)).is_file():
                continue
            if not store.complete_chunks:
                absent += 1
                continue
            c0 = arr.chunks[0]
            raise StoreCorruptError(
                f"{store.path}: the chunk of {name} holding rows {coords[0] * c0}..{min((coords[0] + 1) * c0, rows) - 1} is missing "
                "(zarr would read it as zeros); restore the store from a copy or re-create it.")
    return n, absent


def verify_store(store: "EpisodeStore", decode: bool = True) -> VerifyReport:
    """Check presence (and with ``decode`` the decoding) of every committed chunk of ``store``."""
    t0 = time.perf_counter()
    chunks, unverifiable = check_chunks_present(store)
    decoded = nbytes = 0
    if decode:
        for name, arr, rows in _committed_arrays(store):
            c0 = arr.chunks[0]
            for start in range(0, rows, c0):
                stop = min(start + c0, rows)
                try:
                    block = np.asarray(arr[start:stop])
                except Exception as e:  # noqa: BLE001 - zarr/numcodecs raise ValueError, RuntimeError, ... for damaged chunks
                    raise StoreCorruptError(
                        f"{store.path}: the chunk of {name} holding rows {start}..{stop - 1} does not decode "
                        f"({type(e).__name__}); restore the store from a copy or re-create it.") from None
                decoded += math.prod(arr.cdata_shape[1:]) if arr.ndim > 1 else 1
                nbytes += block.nbytes
    return VerifyReport(str(store.path), store.n_episodes, store.n_steps, 1 + len(store.keys), chunks, decoded, nbytes,
                        unverifiable, round(time.perf_counter() - t0, 3))


def committed_bytes(store: "EpisodeStore") -> int:
    """Uncompressed bytes of the committed rows of every array."""
    return sum(rows * math.prod(arr.shape[1:]) * arr.dtype.itemsize for _, arr, rows in _committed_arrays(store))
