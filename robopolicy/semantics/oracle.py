"""The annotation oracle: a person who writes down the true semantics of a frame they are shown.

Every request counts against the budget, including repeats (a person would be asked again);
past the budget the oracle refuses with :class:`AnnotationBudgetError`. Optional Gaussian
annotation noise models imprecise annotations, as in Sato et al. (2023): ``noise_std`` is in the
semantics' own units, one value or one per dimension (``semantics.annotation_noise`` gives it as a
fraction of each dimension's range, :func:`robopolicy.semantics.noise.range_std`). The noise comes
from the oracle's own generator, so it never shifts what a strategy draws.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from robopolicy.errors import ConfigError, DataError
from robopolicy.semantics.noise import check_std


class AnnotationBudgetError(DataError):
    """More annotations were requested than the budget allows."""


class AnnotationOracle:
    """true_semantics: per episode an array (T_e + 1, D); frames are addressed as (episode, t)."""

    def __init__(self, true_semantics: Sequence[np.ndarray], budget: int, noise_std: float | Sequence[float],
                 rng: np.random.Generator | None = None):
        if int(budget) < 0:
            raise DataError(f"The annotation budget ({budget}) must not be negative; fix semantics.budget.")
        self._true = [np.asarray(s, dtype=np.float32) for s in true_semantics]
        self.budget = int(budget)
        self.noise_std = check_std(noise_std, "annotation noise")  # () or (D,)
        if np.any(self.noise_std > 0) and rng is None:  # a fixed fallback would give every run the same noise
            raise ConfigError("Annotation noise needs a generator; pass rng (the loop's own annotation-noise generator).")
        self.rng = rng
        self.requests = 0

    @property
    def remaining(self) -> int:
        return self.budget - self.requests

    def annotate(self, episode: int, t: int) -> np.ndarray:
        """The (noisy) semantics (D,) float32 of frame ``t`` of ``episode``; costs one annotation."""
        if self.requests >= self.budget:
            raise AnnotationBudgetError(
                f"The annotation budget of {self.budget} is spent; raise semantics.budget or ask for fewer frames."
            )
        if not (0 <= episode < len(self._true) and 0 <= t < len(self._true[episode])):
            raise DataError(f"Frame ({episode}, {t}) does not exist in the offline data; ask for a frame inside it.")
        self.requests += 1
        s = self._true[episode][t]
        if np.any(self.noise_std > 0):
            s = s + (self.rng.standard_normal(s.shape) * self.noise_std).astype(np.float32)
        return s.astype(np.float32)
