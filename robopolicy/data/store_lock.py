"""One writer per episode store: an exclusive ``flock`` on the folder ``<store>/.robopolicy.lock/``.

The lock belongs to the open file description, so the kernel releases it when the holder closes
it, exits or is killed (SIGKILL included): a dead writer never leaves a lock that blocks forever.
The lock folder stays (removing it would let two writers lock two different folders). It is an
empty zarr group whose attributes record the holder (pid, host, command, since when), which is
what a second writer's error quotes; being a zarr node, it does not disturb zarr's own listing of
the store. Readers take no lock: the commit protocol of :mod:`robopolicy.data.store` keeps
committed episodes consistent while a writer appends.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from robopolicy.errors import DataError
from robopolicy.utils.io import atomic_write_bytes

LOCK_NAME = ".robopolicy.lock"
_HOLDER_KEY = "robopolicy_write_lock"


class StoreLockedError(DataError):
    """Another process holds the store's write lock."""


def _holder_text(lock_dir: Path) -> str:
    try:
        h = json.loads((lock_dir / "zarr.json").read_text())["attributes"][_HOLDER_KEY]
        return f"pid {h['pid']} on {h['host']} (command {h['command']!r}, since {h['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not recorded itself yet)"


class StoreLock:
    """The held write lock of one store; release with :meth:`release` (idempotent)."""

    def __init__(self, fd: int, path: Path):
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, store_dir: Path) -> StoreLock:
        """Take the lock of ``store_dir`` (made if missing) or raise StoreLockedError naming the holder."""
        lock_dir = Path(store_dir) / LOCK_NAME
        try:
            lock_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise DataError(f"Cannot make the lock folder {lock_dir} ({e.strerror}); writing a store needs a writable folder, so check the path and its permissions.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(f"The store {store_dir} is being written by {_holder_text(lock_dir)}; wait for that writer to finish or stop it, then retry.") from None
        except BaseException:
            os.close(fd)
            raise
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        meta = {"zarr_format": 3, "node_type": "group", "attributes": {_HOLDER_KEY: holder}}
        atomic_write_bytes(lock_dir / "zarr.json", json.dumps(meta).encode("utf-8"), fsync=False)
        return cls(fd, lock_dir)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor drops the flock

    def __del__(self):
        self.release()
