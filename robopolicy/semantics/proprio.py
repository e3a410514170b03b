"""Semantics the robot measures itself (proprioception) instead of the mapper predicting them from the image.

``semantics.proprio_semantics`` (conf/semantics.yaml) lists semantic coordinates by name, e.g.
``[pusher_x, pusher_y]`` on planar push or ``[hand_x, hand_y, hand_z, gripper]`` on Meta-World.
Those coordinates come from the real robot's own reading, the ``agent_pos`` observation of the
real environment (its end-effector position and gripper, in :attr:`SemanticsTask.proprio_names`
order), and the mapper predicts only the others. The reading is exact: a robot's encoders are
sub-millimetre where the camera mapper is centimetres off, so no sensor noise is modelled.

A :class:`SemanticsSplit` says which coordinate comes from where and puts the full vector back
together (:meth:`SemanticsSplit.assemble`), in the task's name order, for the controller and for
the error reports. The oracle still annotates full vectors and pair augmentation still sets the
full simulator state; only the mapper's targets are the predicted subset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from robopolicy.errors import ConfigError


@dataclass(frozen=True)
class SemanticsSplit:
    """names: the task's semantics (D,), in order; measured: the robot's reading ``agent_pos``, in order;
    proprio: the coordinates taken from the reading (a subset of ``measured``, in ``names`` order)."""

    names: tuple[str, ...]
    measured: tuple[str, ...]
    proprio: tuple[str, ...]

    @property
    def predicted_names(self) -> tuple[str, ...]:
        """What a mapper trained under this split predicts, in the task's order."""
        return tuple(n for n in self.names if n not in self.proprio)

    @property
    def predicted_index(self) -> np.ndarray:
        """Columns of the full (N, D) semantics the mapper predicts."""
        return np.array([self.names.index(n) for n in self.predicted_names], dtype=int)

    def check_mapper(self, mapper_names: Sequence[str] | None, where: str = "the mapper") -> tuple[str, ...]:
        """The names a mapper predicts (None: every task coordinate, as mappers saved before the setting);
        ConfigError when a coordinate comes neither from the mapper nor from the robot."""
        got = self.names if mapper_names is None else tuple(str(n) for n in mapper_names)
        missing = [n for n in self.names if n not in got and n not in self.proprio]
        if missing:
            need = sorted(set(self.names) - set(got), key=self.names.index)
            setting = f"proprio_semantics=[{','.join(need)}]"
            raise ConfigError(f"{where} does not predict {missing} (it was trained with {setting}); "
                              f"set {setting} so the robot's reading supplies them.")
        return got

    def columns(self, mapper_names: Sequence[str] | None) -> np.ndarray:
        """(D,) column of each task coordinate in ``[mapper output | robot reading]`` (checked once; see
        :meth:`assemble`): the listed proprio coordinates index the reading, every other one the mapper."""
        got = self.check_mapper(mapper_names)
        return np.array([len(got) + self.measured.index(n) if n in self.proprio else got.index(n) for n in self.names], int)

    def assemble(self, pred: np.ndarray, mapper_names: Sequence[str] | None, reading: np.ndarray,
                 columns: np.ndarray | None = None) -> np.ndarray:
        """pred (N, len(mapper_names)) from the mapper, reading (N, len(measured)) from the robot -> (N, D) float32
        in the task's order: the listed proprio coordinates from the reading, every other one from the mapper.
        ``columns``: :meth:`columns` of ``mapper_names``, for callers that assemble every step."""
        cols = self.columns(mapper_names) if columns is None else columns
        return np.concatenate([np.asarray(pred, np.float32), np.asarray(reading, np.float32)], axis=1)[:, cols]

    def reading_bounds(self, low: Sequence[float], high: Sequence[float]) -> tuple[list[float], list[float]]:
        """The task's bounds (D,) -> those of the robot's reading (len(measured),), for a mapper that takes it as input."""
        idx = [self.names.index(n) for n in self.measured]
        return [float(low[i]) for i in idx], [float(high[i]) for i in idx]

    def reading_from_truth(self, truth: np.ndarray) -> np.ndarray:
        """truth (N, D) -> the robot's reading (N, len(measured)) at those frames (exact encoders: the true values)."""
        return np.asarray(truth, np.float32)[:, [self.names.index(n) for n in self.measured]]


def semantics_split(task: Any, proprio: Sequence[str] | None) -> SemanticsSplit:
    """The split of ``task`` (a SemanticsTask) for ``proprio`` (``semantics.proprio_semantics``; None or [] = the
    mapper predicts everything). ConfigError naming a listed coordinate the robot does not measure."""
    listed = [str(n) for n in (proprio or [])]
    measured = tuple(task.proprio_names)
    bad = [n for n in listed if n not in measured]
    if bad:
        raise ConfigError(f"proprio_semantics lists {bad}, which the {task.name} robot does not measure; use names from "
                          f"{list(measured)} (its own readings), or [] to predict every coordinate from the image.")
    return SemanticsSplit(tuple(task.names), measured, tuple(n for n in task.names if n in listed))
