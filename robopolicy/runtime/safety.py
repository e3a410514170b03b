"""Safety layer applied to every action before ``Robot.send_action``.

In order: non-finite values (NaN/inf) -> the hold action (the last safe action, as the robot
defines holding); clip to the action bounds; limit the change from the previous sent action per
step; keep an end-effector target inside a workspace box. Every intervention is counted by kind.

Workspace box (``workspace`` dict, from the runner config or ``spec.extra["workspace"]``)::

    low: [x, y, z]          # box corners, in the robot's units
    high: [x, y, z]
    action_dims: [0, 1, 2]  # which action entries form the target
    mode: absolute          # the action *is* the target, or
    mode: delta             # target = ee + scale * action, ee read from the observation:
    ee_key: hand_pos        #   obs[ee_key][ee_slice[0]:ee_slice[1]]
    ee_slice: [0, 3]
    scale: 0.01
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Mapping

import numpy as np

from robopolicy.errors import ConfigError

log = logging.getLogger(__name__)

KINDS = ("nonfinite", "clip", "delta", "workspace", "hold")


class SafetyLayer:
    """low/high: (A,) action bounds; max_delta: scalar or (A,) per-step change limit (None = off)."""

    def __init__(self, low, high, max_delta=None, workspace: Mapping[str, Any] | None = None):
        self.low = np.asarray(low, dtype=np.float32)
        self.high = np.asarray(high, dtype=np.float32)
        if self.low.shape != self.high.shape or np.any(self.low > self.high):
            raise ConfigError("The action bounds are inconsistent (low must be <= high, same length); check the task's action spec.")
        a_dim = self.low.shape[0]
        self.max_delta = None if max_delta is None else np.broadcast_to(np.asarray(max_delta, np.float32), (a_dim,)).copy()
        if self.max_delta is not None and np.any(self.max_delta <= 0):
            raise ConfigError("runner.safety.max_delta must be positive; leave it null to turn the delta limit off.")
        self.workspace = _check_workspace(workspace, a_dim) if workspace else None
        self.counts: Counter = Counter({k: 0 for k in KINDS})
        self.last_safe: np.ndarray | None = None

    def reset(self, last_safe: np.ndarray | None = None) -> None:
        """New episode: forget the previous action (the delta limit restarts)."""
        self.last_safe = None if last_safe is None else np.asarray(last_safe, np.float32).copy()

    def count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] += n

    def apply(self, action: np.ndarray | None, obs: Mapping[str, np.ndarray] | None, hold: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """action: (A,) proposed (None = nothing to execute) -> (safe action (A,), interventions)."""
        kinds: list[str] = []
        a = None if action is None else np.asarray(action, dtype=np.float32).reshape(-1)
        if a is not None and a.shape != self.low.shape:
            raise ConfigError(f"The policy produced {a.shape[0]}-dimensional actions but the robot takes {self.low.shape[0]}; use a policy trained for this robot.")
        if a is not None and not np.all(np.isfinite(a)):
            kinds.append("nonfinite")
            log.warning("non-finite action %s replaced by the hold action", a)
            a = None
        if a is None:
            a = np.asarray(hold, dtype=np.float32).copy()
        if np.any(a < self.low) or np.any(a > self.high):
            kinds.append("clip")
            a = np.clip(a, self.low, self.high)
        if self.max_delta is not None and self.last_safe is not None:
            d = a - self.last_safe
            if np.any(np.abs(d) > self.max_delta):
                kinds.append("delta")
                a = self.last_safe + np.clip(d, -self.max_delta, self.max_delta)
        if self.workspace is not None:
            a2 = self._workspace(a, obs)
            if a2 is not None:
                kinds.append("workspace")
                a = a2
        for k in kinds:
            self.counts[k] += 1
        self.last_safe = a.astype(np.float32)
        return self.last_safe.copy(), kinds

    def _workspace(self, a: np.ndarray, obs: Mapping[str, np.ndarray] | None) -> np.ndarray | None:
        ws = self.workspace
        dims = ws["action_dims"]
        if ws["mode"] == "absolute":
            target = a[dims]
            clipped = np.clip(target, ws["low"], ws["high"])
            if np.array_equal(clipped, target):
                return None
            out = a.copy()
            out[dims] = clipped
            return out
        if obs is None or ws["ee_key"] not in obs:
            return None
        s0, s1 = ws["ee_slice"]
        ee = np.asarray(obs[ws["ee_key"]], np.float32).reshape(-1)[s0:s1]
        target = ee + ws["scale"] * a[dims]
        # A target outside the box is pulled to the box; if the hand is already outside, only
        # moves back towards the box are allowed.
        clipped = np.clip(target, np.minimum(ws["low"], ee), np.maximum(ws["high"], ee))
        if np.allclose(clipped, target):
            return None
        out = a.copy()
        out[dims] = np.clip((clipped - ee) / ws["scale"], self.low[dims], self.high[dims])
        return out


def _check_workspace(ws: Mapping[str, Any], a_dim: int) -> dict[str, Any]:
    try:
        out = {
            "low": np.asarray(ws["low"], np.float32),
            "high": np.asarray(ws["high"], np.float32),
            "action_dims": [int(i) for i in ws.get("action_dims", [0, 1, 2])],
            "mode": str(ws.get("mode", "absolute")),
            "ee_key": ws.get("ee_key"),
            "ee_slice": list(ws.get("ee_slice", [0, 3])),
            "scale": float(ws.get("scale", 1.0)),
        }
    except KeyError as e:
        raise ConfigError(f"The workspace box needs {e.args[0]!r}; give runner.safety.workspace.low and .high.") from None
    n = len(out["action_dims"])
    if out["low"].shape != (n,) or out["high"].shape != (n,) or max(out["action_dims"]) >= a_dim:
        raise ConfigError(f"The workspace box must have {n} low/high values matching action_dims inside the {a_dim}-dim action; fix runner.safety.workspace.")
    if out["mode"] not in ("absolute", "delta"):
        raise ConfigError(f"Unknown workspace mode {out['mode']!r}; use absolute or delta.")
    if out["mode"] == "delta" and not out["ee_key"]:
        raise ConfigError("A delta workspace box needs ee_key, the observation key holding the end-effector position.")
    return out
