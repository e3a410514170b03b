"""Software watchdog and emergency stop.

* :class:`Watchdog`: the runner feeds it whenever a fresh chunk arrives. With no fresh chunk for
  ``hold_after_s`` it says ``HOLD`` (execute the hold action, not the ageing plan); after
  ``stop_after_s`` it says ``STOP``. A dead policy server, a hung or raising policy all look the
  same from here: no fresh chunks. A chunk holding NaN or inf is a fault, not a fresh chunk
  (``feed(t, actions)`` returns False and counts it in ``nonfinite_chunks``): a policy that only
  produces such chunks is held, then stopped, like a dead one (the safety layer meanwhile replaces
  each non-finite action by the hold action).
* :class:`EStop`: latched stop request from a signal (SIGUSR1 by default), a key on stdin, or the
  existence of a file. The runner polls it at every tick, so it stops within one period.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from enum import Enum

import numpy as np

from robopolicy.errors import ConfigError

log = logging.getLogger(__name__)


class WatchState(str, Enum):
    OK = "ok"
    HOLD = "hold"
    STOP = "stop"


class Watchdog:
    def __init__(self, hold_after_s: float, stop_after_s: float):
        if not 0 < hold_after_s <= stop_after_s:
            raise ConfigError(f"The watchdog needs 0 < runner.hold_after_s ({hold_after_s}) <= runner.stop_after_s "
                              f"({stop_after_s}); set them so the robot holds before it stops.")
        self.hold_after_s = float(hold_after_s)
        self.stop_after_s = float(stop_after_s)
        self.last_fresh_s: float | None = None
        self.stopped_at_s: float | None = None  # the check time that turned it to STOP
        self.state = WatchState.OK
        self.trips = 0  # OK -> HOLD transitions
        self.stops = 0
        self.nonfinite_chunks = 0  # chunks refused because they held NaN / inf

    def arm(self, t: float) -> None:
        """Start (or restart, at an episode start) counting from ``t``."""
        self.last_fresh_s = float(t)
        self.stopped_at_s = None
        self.state = WatchState.OK

    def feed(self, t: float, actions: np.ndarray | None = None) -> bool:
        """A chunk arrived at ``t``; ``actions`` (T, A) when the caller has them.

        Returns True when the chunk counts as fresh. A chunk with any non-finite value is a fault:
        it is counted, not fresh (the age keeps growing), so HOLD and STOP follow as for no chunk.
        """
        if actions is not None and not np.all(np.isfinite(np.asarray(actions, dtype=np.float64))):
            self.nonfinite_chunks += 1
            log.warning("watchdog: chunk with NaN/inf actions refused (%d so far)", self.nonfinite_chunks)
            return False
        self.last_fresh_s = float(t)
        if self.state is WatchState.HOLD:
            log.warning("watchdog: fresh actions again, resuming")
        if self.state is not WatchState.STOP:
            self.state = WatchState.OK
        return True

    def check(self, t: float) -> WatchState:
        if self.last_fresh_s is None:
            self.arm(t)
        age = t - self.last_fresh_s
        if self.state is not WatchState.STOP:
            if age >= self.stop_after_s:
                self.state = WatchState.STOP
                self.stopped_at_s = float(t)
                self.stops += 1
                log.error("watchdog: no fresh action for %.3f s, stopping", age)
            elif age >= self.hold_after_s and self.state is WatchState.OK:
                self.state = WatchState.HOLD
                self.trips += 1
                log.warning("watchdog: no fresh action for %.3f s, holding", age)
        return self.state


class EStop:
    """Latched emergency stop. Sources: ``signal_name`` (e.g. "SIGUSR1", main thread only),
    ``file_path`` (stop as soon as the file exists), ``key`` (a line on stdin starting with it)."""

    def __init__(self, signal_name: str | None = "SIGUSR1", file_path: str | None = None, key: str | None = None):
        self._event = threading.Event()
        self.reason: str | None = None
        self.t_triggered: float | None = None  # monotonic time the request was seen
        self.file_path = file_path or None
        self._old_handler = None
        self._signum = None
        if signal_name:
            signum = getattr(signal, str(signal_name), None)
            if signum is None:
                raise ConfigError(f"Unknown e-stop signal {signal_name!r}; use a name from Python's signal module such as SIGUSR1.")
            if threading.current_thread() is threading.main_thread():
                self._signum = signum
                self._old_handler = signal.signal(signum, self._on_signal)
            else:
                log.warning("e-stop: not in the main thread, signal %s not installed", signal_name)
        if key:
            threading.Thread(target=self._read_keys, args=(str(key),), daemon=True, name="estop-keys").start()

    def trigger(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self.t_triggered = time.monotonic()
            self._event.set()

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self.trigger(f"signal {signal.Signals(signum).name}")

    def _read_keys(self, key: str) -> None:
        for line in sys.stdin:
            if line.strip().startswith(key):
                self.trigger(f"key {key!r}")
                return

    @property
    def triggered(self) -> bool:
        """Polled once per tick (one stat() call when a file is configured)."""
        if not self._event.is_set() and self.file_path and os.path.exists(self.file_path):
            self.trigger(f"file {self.file_path}")
        return self._event.is_set()

    def close(self) -> None:
        if self._signum is not None:
            signal.signal(self._signum, self._old_handler if self._old_handler is not None else signal.SIG_DFL)
            self._signum = None
