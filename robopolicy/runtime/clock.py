"""Fixed-rate clock on an absolute schedule.

Tick ``k`` is due at ``t0 + k * period_s``. :meth:`FixedRateClock.wait` sleeps until ``spin_s``
before the tick (``time.sleep`` alone wakes 70-130 µs late at the median and up to several ms in
the worst case on a loaded machine) and then busy-waits on the monotonic clock, which lands within
a few µs. The schedule never drifts: a late tick does not move later ticks. A tick that is already
more than one period late when ``wait`` is called is *skipped* and counted as an overrun, so the
loop runs on the grid again instead of silently absorbing the delay.

All times are ``time.monotonic()`` seconds (CLOCK_MONOTONIC on Linux, the same clock robots stamp
their observations with).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from robopolicy.errors import ConfigError


def now() -> float:
    """The runtime's time base: monotonic seconds."""
    return time.monotonic()


@dataclass(frozen=True)
class Tick:
    """One tick: its grid index, when it was due, when the loop woke, and how many ticks were skipped."""

    index: int
    target_s: float
    actual_s: float
    skipped: int

    @property
    def error_s(self) -> float:
        """Wake-up time minus due time (positive = late)."""
        return self.actual_s - self.target_s


class FixedRateClock:
    """Ticks at ``rate_hz`` on the grid ``t0 + k / rate_hz``.

    ``spin_s``: how long before a tick to stop sleeping and start spinning (0 = sleep only).
    ``sleep``/``time_fn`` are injectable for tests.
    """

    def __init__(self, rate_hz: float, spin_s: float = 0.0005, time_fn: Callable[[], float] = now,
                 sleep: Callable[[float], None] = time.sleep):
        if rate_hz <= 0:
            raise ConfigError(f"rate_hz must be positive, got {rate_hz}; pass e.g. rate_hz=50.")
        self.rate_hz = float(rate_hz)
        self.period_s = 1.0 / self.rate_hz
        self.spin_s = max(0.0, float(spin_s))
        self._time = time_fn
        self._sleep = sleep
        self.t0: float | None = None
        self._next = 0
        self.overruns = 0  # ticks skipped because the loop was more than a period late

    def start(self, t0: float | None = None) -> None:
        """Anchor the grid: tick 0 is due at ``t0`` (default: now)."""
        self.t0 = self._time() if t0 is None else float(t0)
        self._next = 0

    def target(self, index: int) -> float:
        assert self.t0 is not None, "call start() first"
        return self.t0 + index * self.period_s

    def index_at(self, t: float) -> int:
        """Grid index nearest to time ``t``."""
        assert self.t0 is not None, "call start() first"
        return int(round((t - self.t0) * self.rate_hz))

    def wait(self) -> Tick:
        """Block until the next tick is due and return it."""
        if self.t0 is None:
            self.start()
        k = self._next
        target = self.target(k)
        t = self._time()
        skipped = 0
        if t - target >= self.period_s:
            # More than one period late: skip to the newest due grid tick, count what was skipped.
            late_ticks = int((t - target) * self.rate_hz)
            skipped = late_ticks
            k += late_ticks
            target = self.target(k)
            self.overruns += skipped
        remaining = target - t
        if remaining > self.spin_s:
            self._sleep(remaining - self.spin_s)
        t = self._time()
        while t < target:
            t = self._time()
        self._next = k + 1
        return Tick(index=k, target_s=target, actual_s=t, skipped=skipped)
