"""Acquisition strategies (Hydra ``_target_`` in ``conf/semantics/strategy/``): which acquisition
function to call, with which inputs, and whether annotations are carried by pair augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robopolicy.semantics import acquisition as acq
from robopolicy.semantics.augment import LabelSet


@dataclass
class Pool:
    """What a strategy may look at: the labels so far, VAE latents (N, Z), ensemble predictions (M, N, D)."""

    labels: LabelSet
    segment_length: int
    latents: np.ndarray | None = None
    member_preds: np.ndarray | None = None

    @property
    def episode_of(self) -> np.ndarray:
        return self.labels.data.episode_of

    @property
    def labeled(self) -> np.ndarray:
        return self.labels.age >= 0


class Strategy:
    name = "strategy"
    augment = True
    needs_latents = False
    needs_ensemble = False

    def select(self, pool: Pool, k: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


class RandomFrames(Strategy):
    """Uniformly random unlabeled frames, each labelling only itself (no pair augmentation)."""

    name, augment = "random_frames", False

    def select(self, pool, k, rng):
        return acq.random_frames(np.flatnonzero(~pool.labeled), k, rng)


class RandomEpisodes(Strategy):
    """A random new episode, a random segment start inside it, pair augmentation."""

    name = "random_episodes"

    def select(self, pool, k, rng):
        chosen = np.unique(pool.episode_of[pool.labels.annotated]) if pool.labels.annotated else np.zeros(0, int)
        return acq.random_episodes(pool.episode_of, pool.labels.data.t_of, chosen, k, pool.segment_length, rng)


class Diversity(Strategy):
    """Sato et al.: farthest-first episodes in VAE latent space, then the segment within that is farthest from the
    labelled set (``segment=farthest``) or covers the most unlabelled latent mass (``segment=coverage``)."""

    name, needs_latents = "diversity", True

    def __init__(self, segment: str):  # value: conf/semantics/strategy/diversity.yaml (hybrid.yaml refers to it)
        self.segment = acq.check_segment_rule(segment)

    def select(self, pool, k, rng):
        return acq.diversity_episodes(pool.latents, pool.episode_of, pool.labeled, k, pool.segment_length,
                                      annotated=np.asarray(pool.labels.annotated, int), segment=self.segment)


class Variance(Strategy):
    """Largest ensemble variance; the first round (no mapper yet) takes random episodes."""

    name, needs_ensemble = "variance", True

    def select(self, pool, k, rng):
        if pool.member_preds is None:
            return RandomEpisodes().select(pool, k, rng)
        var = acq.ensemble_variance(pool.member_preds)
        return acq.top_scores(var, pool.episode_of, pool.labeled, k, pool.segment_length)


class Hybrid(Strategy):
    """(1 - w) x normalised variance + w x normalised latent distance; first round = diversity."""

    name, needs_latents, needs_ensemble = "hybrid", True, True

    def __init__(self, weight: float, segment: str):  # values: conf/semantics/strategy/hybrid.yaml
        self.weight = float(weight)
        self.first_round = Diversity(segment)

    def select(self, pool, k, rng):
        if pool.member_preds is None:
            return self.first_round.select(pool, k, rng)
        var = acq.ensemble_variance(pool.member_preds)
        return acq.hybrid(var, pool.latents, pool.episode_of, pool.labeled, k, pool.segment_length, self.weight)
