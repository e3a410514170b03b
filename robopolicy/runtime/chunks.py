"""Timestamped action chunks and the buffer that merges them onto the control grid.

A policy returns a chunk of ``T`` actions for one observation taken at ``t_obs``. Action ``i`` is
meant for time ``t_obs + (i + offset) * dt_s`` (Diffusion Policy's real-robot runner does the same).
The :class:`ActionBuffer` maps every action to the control ticks it covers (``[tau_i, tau_i + dt)``,
nearest tick, at least one tick), so a policy can run at a different rate than the loop. At tick
``k`` the buffer hands out the merged action for ``k`` and forgets every earlier slot: an action
whose time has passed is dropped and counted, never executed.

Merge rules for a slot covered by several chunks (oldest first, ``a_0 .. a_n``):

* ``latest``   -- the newest chunk wins.
* ``average``  -- running weighted average ``m <- (1 - w) m + w a_j`` (LeRobot's async inference
  uses ``w = 0.7``); ``w = new_weight``.
* ``ensemble`` -- ACT's temporal ensembling: ``sum_j exp(-m j) a_j / sum_j exp(-m j)``, the oldest
  prediction weighted most (``m = ensemble_m``, ACT uses 0.01).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from robopolicy.errors import ConfigError

MERGE_RULES = ("latest", "average", "ensemble")


@dataclass
class TimedChunk:
    """actions: (T, A) float32; action i is meant for ``t0_s + i * dt_s`` (monotonic seconds)."""

    actions: np.ndarray
    t0_s: float
    dt_s: float
    seq: int = 0
    episode: int = 0
    t_obs_s: float = 0.0
    latency_s: float = 0.0
    meta: dict = field(default_factory=dict)

    def times(self) -> np.ndarray:
        """(T,) intended time of every action."""
        return self.t0_s + self.dt_s * np.arange(len(self.actions))


def chunk_from_obs(actions: np.ndarray, t_obs_s: float, dt_s: float, offset: float = 0.0, **kw) -> TimedChunk:
    """Stamp a policy output: action i is meant for ``t_obs + (i + offset) * dt``."""
    return TimedChunk(np.asarray(actions, dtype=np.float32), t0_s=t_obs_s + offset * dt_s, dt_s=dt_s,
                      t_obs_s=t_obs_s, **kw)


class ActionBuffer:
    """Slots on the grid ``t0 + k * period`` holding the actions that chunks planned for them.

    Only the control thread touches the buffer (no locking).
    """

    def __init__(self, period_s: float, merge: str = "latest", new_weight: float = 0.5, ensemble_m: float = 0.01):
        if merge not in MERGE_RULES:
            raise ConfigError(f"Unknown merge rule {merge!r}; use runner.merge=latest, average or ensemble.")
        if not 0.0 < new_weight <= 1.0:
            raise ConfigError(f"runner.new_weight={new_weight} must be in (0, 1]; 0.5 averages old and new equally.")
        self.period_s = float(period_s)
        self.merge = merge
        self.new_weight = float(new_weight)
        self.ensemble_m = float(ensemble_m)
        self.grid_t0: float = 0.0
        self._slots: dict[int, list[tuple[int, np.ndarray, float, float]]] = {}  # k -> [(seq, a, tau, dt)]
        self._next = 0  # lowest slot that may still be executed
        self.stale_dropped = 0  # actions whose every slot had already passed
        self.stale_executed = 0  # actions executed after their time (an invariant: stays 0)
        self.chunks_added = 0

    # -- grid -----------------------------------------------------------------------------------
    def set_grid(self, t0_s: float, next_index: int = 0) -> None:
        """Align to the control clock: slot k is due at ``t0_s + k * period``; clears the buffer."""
        self.grid_t0 = float(t0_s)
        self.clear(next_index)

    def clear(self, next_index: int | None = None) -> None:
        self._slots.clear()
        if next_index is not None:
            self._next = int(next_index)

    def slot_of(self, t: float) -> int:
        return int(round((t - self.grid_t0) / self.period_s))

    def slot_time(self, k: int) -> float:
        return self.grid_t0 + k * self.period_s

    # -- filling --------------------------------------------------------------------------------
    def add(self, chunk: TimedChunk) -> int:
        """Place a chunk's actions on their slots; returns how many actions were already stale."""
        self.chunks_added += 1
        dropped = 0
        for a, tau in zip(chunk.actions, chunk.times()):
            first = self.slot_of(tau)
            last = max(first + 1, self.slot_of(tau + chunk.dt_s))  # exclusive
            if last <= self._next:
                dropped += 1
                continue
            for k in range(max(first, self._next), last):
                self._slots.setdefault(k, []).append((chunk.seq, a, float(tau), float(chunk.dt_s)))
        self.stale_dropped += dropped
        return dropped

    # -- reading --------------------------------------------------------------------------------
    def has(self, k: int) -> bool:
        return k in self._slots and k >= self._next

    def peek(self, k: int) -> np.ndarray | None:
        """Merged action for slot k without consuming anything."""
        entries = self._slots.get(k)
        return None if not entries or k < self._next else self._merge(entries)

    def pop(self, k: int, target_s: float | None = None) -> np.ndarray | None:
        """The merged action for tick k (None when no chunk covers it); forgets every slot < k + 1.

        ``target_s`` (the tick's due time) is used to check the never-stale invariant.
        """
        for old in [j for j in self._slots if j < k]:
            del self._slots[old]
        self._next = k + 1
        entries = self._slots.pop(k, None)
        if not entries:
            return None
        if target_s is not None:
            for _, _, tau, dt in entries:
                # An action covers [tau, tau + dt); executing it more than half a period after that
                # interval ends would be executing a stale action.
                if target_s > tau + dt + 0.5 * self.period_s:
                    self.stale_executed += 1
                    break
        return self._merge(entries)

    def committed(self, t_start_s: float, dt_s: float, n: int) -> np.ndarray | None:
        """(m, A) merged actions planned for ``t_start + i * dt`` (i < n), stopping at the first gap.

        Real-time chunking passes these to the policy: they will execute while it infers.
        """
        out = []
        for i in range(n):
            k = self.slot_of(t_start_s + i * dt_s)
            a = self.peek(k)
            if a is None:
                break
            out.append(a)
        return np.stack(out).astype(np.float32) if out else None

    def future_slots(self) -> int:
        """How many slots from the next tick on are covered."""
        return sum(1 for k in self._slots if k >= self._next)

    def _merge(self, entries: list[tuple[int, np.ndarray, float, float]]) -> np.ndarray:
        entries = sorted(entries, key=lambda e: e[0])
        if self.merge == "latest" or len(entries) == 1:
            return np.array(entries[-1][1], dtype=np.float32)
        if self.merge == "average":
            m = np.array(entries[0][1], dtype=np.float64)
            for _, a, _, _ in entries[1:]:
                m = (1.0 - self.new_weight) * m + self.new_weight * a
            return m.astype(np.float32)
        w = np.array([math.exp(-self.ensemble_m * j) for j in range(len(entries))])
        acts = np.stack([e[1] for e in entries]).astype(np.float64)
        return (w[:, None] * acts).sum(0).__truediv__(w.sum()).astype(np.float32)
