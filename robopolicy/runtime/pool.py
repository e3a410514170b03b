"""A bounded, fair worker pool for the policy servers.

Each client (a ZeroMQ routing id, a websocket connection) has its own FIFO queue of jobs; the
workers take jobs from the clients in turn (round robin), so a client that floods the server or
asks for slow inferences delays only its own requests. Queues are bounded per client and in
total: a job beyond a bound is refused at once (:class:`Busy`), nothing grows without limit.

The standard library's ``ThreadPoolExecutor`` has one unbounded FIFO shared by all submitters,
which is exactly the unfairness this avoids; hence this small scheduler.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)


class Busy(RuntimeError):
    """The client's queue (or the server's) is full; the request was not queued."""


class FairPool:
    """workers: threads running jobs; per_client: queued + running jobs one client may have;
    total: queued jobs over all clients."""

    def __init__(self, workers: int, per_client: int, total: int, name: str = "policy-pool"):
        if workers < 1 or per_client < 1 or total < 1:
            raise ValueError("workers, per_client and total must be at least 1")
        self.per_client, self.total = int(per_client), int(total)
        self._cv = threading.Condition()
        self._queues: OrderedDict[Hashable, deque] = OrderedDict()
        self._active: dict[Hashable, int] = {}  # queued + running per client
        self._queued = 0
        self._closed = False
        self.refused = 0
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(int(workers))]
        for t in self._threads:
            t.start()

    def submit(self, client: Hashable, fn: Callable[[], Any]) -> Future:
        """Queue ``fn()`` for ``client``; the Future gets its result or exception. Raises Busy."""
        fut: Future = Future()
        with self._cv:
            if self._closed:
                raise Busy("the server is shutting down")
            if self._active.get(client, 0) >= self.per_client:
                self.refused += 1
                raise Busy(f"this client already has {self.per_client} request(s) in progress; wait for the replies")
            if self._queued >= self.total:
                self.refused += 1
                raise Busy(f"the server's queue is full ({self.total} requests); retry shortly")
            self._queues.setdefault(client, deque()).append((fn, fut))
            self._active[client] = self._active.get(client, 0) + 1
            self._queued += 1
            self._cv.notify()
        return fut

    def close(self, timeout_s: float = 1.0) -> None:
        with self._cv:
            self._closed = True
            for q in self._queues.values():
                for _, fut in q:
                    fut.cancel()
            self._queues.clear()
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout_s)

    def _next(self):
        """The next job, taking clients in turn (caller holds the lock)."""
        client, q = next(iter(self._queues.items()))
        fn, fut = q.popleft()
        del self._queues[client]
        if q:
            self._queues[client] = q  # to the back of the line
        self._queued -= 1
        return client, fn, fut

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queues and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                client, fn, fut = self._next()
            try:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as e:  # noqa: BLE001 - handed to the caller, the worker lives on
                        fut.set_exception(e)
            finally:
                with self._cv:
                    left = self._active.get(client, 1) - 1
                    if left > 0:
                        self._active[client] = left
                    else:
                        self._active.pop(client, None)
