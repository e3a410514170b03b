"""zarr v3 plumbing for the episode store: a crash-safe LocalStore and array layout choices.

Kept apart from :mod:`robopolicy.data.store` so that the store module reads as the episode logic.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
from zarr.core.buffer import Buffer
from zarr.storage import LocalStore

from robopolicy.utils.io import atomic_write_bytes


# Chunking: low-dim arrays are chunked along time; images get a few frames per chunk so a window
# read decompresses little, while an episode is not thousands of tiny files.
LOWDIM_CHUNK_STEPS = 1024
IMAGE_CHUNK_TARGET_BYTES = 256 * 1024
IMAGE_CHUNK_MAX_FRAMES = 16


def _atomic_put(path: Path, data: memoryview, exclusive: bool, fsync: bool) -> None:
    """Write one store file as temp (+ fsync) + rename, so it is either the old or the new file."""
    if exclusive and path.exists():
        raise FileExistsError(str(path))
    atomic_write_bytes(path, data, fsync=fsync)


class DurableLocalStore(LocalStore):
    """A zarr ``LocalStore`` whose every file write is atomic, and durable when ``fsync``.

    zarr 3.1's LocalStore already writes through a temporary file and ``replace`` (atomic against a
    killed process) but does not fsync, and that is an implementation detail, not a promise. The
    episode store's commit protocol needs atomic file replacement on any zarr 3.x, so this subclass
    overrides the one write path (``_set``). With ``fsync=True`` (default) each file also reaches the
    disk before it replaces the old one (survives power loss; costs one fsync per file written);
    ``fsync=False`` is still safe against a killed process. Files on disk are ordinary zarr v3.
    """

    def __init__(self, root: Path | str, *, read_only: bool = False, fsync: bool = True) -> None:
        super().__init__(root, read_only=read_only)
        self.fsync = fsync

    def with_read_only(self, read_only: bool = False) -> "DurableLocalStore":
        return type(self)(self.root, read_only=read_only, fsync=self.fsync)

    async def _set(self, key: str, value: Buffer, exclusive: bool = False) -> None:
        if not self._is_open:
            await self._open()
        self._check_writable()
        if not isinstance(value, Buffer):
            raise TypeError(f"store value must be a zarr Buffer, got {type(value).__name__}")
        await asyncio.to_thread(_atomic_put, self.root / key, value.as_buffer_like(), exclusive, self.fsync)

    def set_sync(self, key: str, value: Buffer) -> None:
        self._ensure_open_sync()
        self._check_writable()
        _atomic_put(self.root / key, value.as_buffer_like(), False, self.fsync)


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
