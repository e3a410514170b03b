"""zarr v3 plumbing for the episode store: a crash-safe LocalStore and array layout choices.

Kept apart from :mod:`robopolicy.data.store` so that the store module reads as the episode logic.
Only zarr's public API is used: the ``Store`` methods ``set``/``set_if_not_exists``/``set_sync``/
``with_read_only`` that every store implements, ``create_array``'s codec and config arguments and
``Array.with_config``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.core.buffer import Buffer
from zarr.storage import LocalStore

from robopolicy.utils.io import atomic_write_bytes


# Chunking: low-dim arrays are chunked along time; images get a few frames per chunk so a window
# read decompresses little, while an episode is not thousands of tiny files.
LOWDIM_CHUNK_STEPS = 1024
IMAGE_CHUNK_TARGET_BYTES = 256 * 1024
IMAGE_CHUNK_MAX_FRAMES = 16

# Every chunk carries a CRC32C after compression, so a truncated, emptied or altered chunk file
# fails to decode instead of decoding to wrong numbers.
COMPRESSORS = (ZstdCodec(level=0), Crc32cCodec())
# zarr skips chunks equal to the fill value by default; the store writes every chunk so that a
# missing chunk file always means damage, never "all zeros".
ARRAY_CONFIG = {"write_empty_chunks": True}
# Root attribute telling verification that every chunk of the committed range is on disk.
FORMAT_KEY = "store_format"
FORMAT_COMPLETE_CHUNKS = 2


def _atomic_put(path: Path, data: memoryview, exclusive: bool, fsync: bool) -> None:
    """Write one store file as temp (+ fsync) + rename, so it is either the old or the new file."""
    if exclusive and path.exists():
        raise FileExistsError(str(path))
    atomic_write_bytes(path, data, fsync=fsync)


class DurableLocalStore(LocalStore):
    """A zarr ``LocalStore`` whose every file write is atomic, and durable when ``fsync``.

    zarr's LocalStore writes through a temporary file too, but without fsync, and that is an
    implementation detail, not a promise. The episode store's commit protocol needs atomic file
    replacement, so this subclass implements the public write methods of zarr's ``Store``
    interface itself. With ``fsync=True`` (default) each file also reaches the disk before it
    replaces the old one (survives power loss; one fsync per file written); ``fsync=False`` is
    still safe against a killed process. Files on disk are ordinary zarr v3.
    """

    def __init__(self, root: Path | str, *, read_only: bool = False, fsync: bool = True) -> None:
        super().__init__(root, read_only=read_only)
        self.fsync = fsync

    def with_read_only(self, read_only: bool = False) -> "DurableLocalStore":
        return type(self)(self.root, read_only=read_only, fsync=self.fsync)

    def _put(self, key: str, value: Buffer, exclusive: bool) -> None:
        if self.read_only:
            raise ValueError("store was opened in read-only mode and does not support writing")
        if not isinstance(value, Buffer):
            raise TypeError(f"store value must be a zarr Buffer, got {type(value).__name__}")
        _atomic_put(self.root / key, value.as_buffer_like(), exclusive, self.fsync)

    async def set(self, key: str, value: Buffer) -> None:
        await asyncio.to_thread(self._put, key, value, False)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        try:
            await asyncio.to_thread(self._put, key, value, True)
        except FileExistsError:
            pass

    def set_sync(self, key: str, value: Buffer) -> None:
        self._put(key, value, False)


def remove_stale_temp_files(root: Path) -> int:
    """Delete temporary files left by a killed writer (``.<name>.*.tmp`` and zarr's ``*.partial``).

    Returns how many were removed.
    """
    n = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if (name.startswith(".") and name.endswith(".tmp")) or name.endswith(".partial"):
                os.unlink(os.path.join(dirpath, name))
                n += 1
    return n


def chunk_shape(item_shape: tuple[int, ...], dtype: np.dtype, is_image: bool) -> tuple[int, ...]:
    """Chunk shape for an array of ``(T, *item_shape)``: a few frames for images, 1024 steps else."""
    if is_image:
        frame_bytes = max(1, int(np.prod(item_shape)) * np.dtype(dtype).itemsize)
        steps = int(np.clip(IMAGE_CHUNK_TARGET_BYTES // frame_bytes, 1, IMAGE_CHUNK_MAX_FRAMES))
    else:
        steps = LOWDIM_CHUNK_STEPS
    return (steps, *item_shape)


def create_array(group: zarr.Group, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype) -> zarr.Array:
    """A new array in ``group`` with the store's codecs (zstd + CRC32C) that writes every chunk."""
    return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                              compressors=COMPRESSORS, config=ARRAY_CONFIG)


def writing(array: zarr.Array) -> zarr.Array:
    """``array`` opened from disk, set to write every chunk (zarr's runtime config is not stored)."""
    return array.with_config(ARRAY_CONFIG)
