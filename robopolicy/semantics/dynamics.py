"""The manipulated object's mass and friction in a MuJoCo model, and pair augmentation that keeps only the labels
those do not change.

:class:`ObjectDynamics` scales one object's mass and friction parameters from the values they had when it was made;
the "real" environments use it for their dynamics gap, and :class:`DynamicsGate` for the simulator's replays.

**Why the gate.** Pair augmentation replays the logged actions in the simulator from an annotated state. Where the
robot moves freely or the object rests, the replay does not depend on the object's mass or friction and the labels
are as good as the annotation; once the robot pushes or carries the object, they follow the simulator's dynamics,
which may not be the robot's. (On Meta-World push most of the label error was the replay's hidden robot state, not
the object's dynamics: ``augment_follow_reading`` fixes that; with it, the gate lowers the object label error from
0.49 to 0.38 cm, tools/semantics_label_error.py.) The gate replays each segment again under ``samples`` draws of the object's mass and
friction from wide ranges (log-uniform; they need to cover the real values, not know them) and ends the segment at
the first frame where a replay leaves the nominal one by more than ``max_spread`` on a coordinate the mapper learns:
the labels it keeps are those the unknown dynamics cannot move. The draws are seeded by the annotated frame, so a
resumed run gates the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from robopolicy.errors import ConfigError

DYNAMICS_STREAM = 3  # the gate's draws for an annotated frame f come from default_rng((seed, DYNAMICS_STREAM, f))


class ObjectDynamics:
    """One object's mass (``model.body_mass[body]``) and friction parameters (``(field, index)`` pairs of ``model``),
    scaled by :meth:`scale` from their values at construction."""

    def __init__(self, model, body: int, friction: Sequence[tuple[str, tuple[int, ...] | int]]):
        self.model, self.body, self.friction = model, int(body), list(friction)
        self._mass0 = float(model.body_mass[self.body])
        self._friction0 = [float(getattr(model, field)[idx]) for field, idx in self.friction]

    def scale(self, mass_scale: float, friction_scale: float) -> None:
        """Mass x ``mass_scale`` (> 0) and every friction parameter x ``friction_scale`` (>= 0), of the original values."""
        if not mass_scale > 0 or not friction_scale >= 0:
            raise ConfigError(f"An object's mass scale must be > 0 and its friction scale >= 0, got {mass_scale} and "
                              f"{friction_scale}; fix real_env.mass_scale / friction_scale or augment_dynamics' ranges.")
        self.model.body_mass[self.body] = self._mass0 * float(mass_scale)
        for (field, idx), v0 in zip(self.friction, self._friction0):
            getattr(self.model, field)[idx] = v0 * float(friction_scale)


def check_ranges(mass_range: Sequence[float], friction_range: Sequence[float]) -> None:
    """ConfigError naming the setting when either range is not [low, high] with 0 < low <= high."""
    _log_range(mass_range, "augment_dynamics.mass_range")
    _log_range(friction_range, "augment_dynamics.friction_range")


def _log_range(r: Sequence[float], key: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in r)
    except (TypeError, ValueError):  # not two numbers
        lo = hi = 0.0
    if not (0 < lo <= hi):
        raise ConfigError(f"{key}={[lo, hi]} is not a range of scales; give [low, high] with 0 < low <= high, "
                          f"e.g. {key}=[0.5,2.0].")
    return np.log(lo), np.log(hi)


@dataclass
class DynamicsGate:
    """Keep a pair-augmented segment only while ``samples`` replays under other object dynamics agree with it.

    ``max_spread``: (D,) in the semantics' units, ``inf`` for coordinates not checked (those the robot measures).
    """

    dynamics: ObjectDynamics
    samples: int
    mass_range: Sequence[float]
    friction_range: Sequence[float]
    max_spread: np.ndarray
    seed: int = 0

    def __post_init__(self):
        if int(self.samples) < 1:
            raise ConfigError(f"augment_dynamics.samples={self.samples} must be at least 1 for a gate; set 0 to turn it off.")
        self._log_mass = _log_range(self.mass_range, "augment_dynamics.mass_range")
        self._log_friction = _log_range(self.friction_range, "augment_dynamics.friction_range")
        self.max_spread = np.asarray(self.max_spread, np.float32)

    def draws(self, frame: int) -> np.ndarray:
        """(samples, 2) mass and friction scales for the segment annotated at ``frame``."""
        rng = np.random.default_rng((int(self.seed), DYNAMICS_STREAM, int(frame)))
        u = rng.uniform(size=(int(self.samples), 2))
        lo = np.array([self._log_mass[0], self._log_friction[0]])
        hi = np.array([self._log_mass[1], self._log_friction[1]])
        return np.exp(lo + u * (hi - lo))

    def kept(self, frame: int, nominal: np.ndarray, replay) -> int:
        """How many leading frames of ``nominal`` (L, D) to keep; ``replay()`` -> (L, D) runs the segment again with the
        dynamics as they are set. The object's dynamics are restored afterwards."""
        spread = np.zeros(nominal.shape, np.float32)
        try:
            for m, f in self.draws(frame):
                self.dynamics.scale(m, f)
                spread = np.maximum(spread, np.abs(replay() - nominal))
        finally:
            self.dynamics.scale(1.0, 1.0)
        off = np.flatnonzero(np.any(spread > self.max_spread, axis=1))
        return int(off[0]) if len(off) else len(nominal)
