"""One writer per episode store: an exclusive ``flock`` on ``<store>/.robopolicy.lock``.

The lock belongs to the open file description, so the kernel releases it when the holder closes
it, exits or is killed (SIGKILL included): a dead writer never leaves a lock that blocks forever.
The file itself stays (deleting it would let two writers lock two different files); after taking
the lock the holder writes who it is into it (pid, host, command, since when), which is what a
second writer's error message quotes. Readers take no lock: the commit protocol of
:mod:`robopolicy.data.store` keeps committed episodes consistent while a writer appends.
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

LOCK_NAME = ".robopolicy.lock"


class StoreLockedError(DataError):
    """Another process holds the store's write lock."""


def _holder_text(raw: bytes) -> str:
    try:
        h = json.loads(raw.decode("utf-8"))
        return f"pid {h['pid']} on {h['host']} (command {h['command']!r}, since {h['since']})"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "another process (it has not recorded itself yet)"


class StoreLock:
    """The held write lock of one store; release with :meth:`release` (idempotent)."""

    def __init__(self, fd: int, path: Path):
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, store_dir: Path) -> "StoreLock":
        """Take the lock of ``store_dir`` (made if missing) or raise StoreLockedError naming the holder."""
        store_dir = Path(store_dir)
        path = store_dir / LOCK_NAME
        try:
            store_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise DataError(f"Cannot write the lock file {path} ({e.strerror}); writing a store needs a writable folder, so check the path and its permissions.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(fd, 4096, 0)
            os.close(fd)
            raise StoreLockedError(f"The store {store_dir} is being written by {_holder_text(raw)}; wait for that writer to finish or stop it, then retry.") from None
        except BaseException:
            os.close(fd)
            raise
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        # Written in place (not temp + rename): the lock lives on this inode.
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        return cls(fd, path)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor drops the flock

    def __del__(self):
        self.release()
