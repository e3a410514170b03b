"""The active-learning loop: rounds of (acquire, annotate, augment, retrain) until the budget is spent."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from omegaconf import OmegaConf

from robopolicy.semantics.augment import LabelSet
from robopolicy.semantics.data import RealEpisodes
from robopolicy.semantics.mapper import MapperEnsemble, build_mapper, train_mapper
from robopolicy.semantics.oracle import AnnotationOracle
from robopolicy.semantics.strategies import Pool, Strategy

RoundFn = Callable[[MapperEnsemble, LabelSet, int], dict]


def run_active(strategy: Strategy, data: RealEpisodes, oracle: AnnotationOracle, sim_env, cfg: Any, run_dir: str | Path,
               latents: np.ndarray | None = None, on_round: RoundFn | None = None, seed: int = 0) -> list[dict]:
    """Annotate ``cfg.per_round`` frames per round until ``oracle`` refuses; retrain the mapper each round.

    cfg: the ``semantics`` config (mapper, trainer, segment_length, transition_noise_std, per_round,
    pool_stride). ``on_round(mapper, labels, annotations) -> dict`` evaluates a round; the returned
    list holds one record per round with ``annotations``, ``labeled_frames`` and what it returned.
    """
    rng = np.random.default_rng(seed)
    seg = int(cfg.segment_length) if strategy.augment else 1
    labels = LabelSet(data, len(cfg.semantics_low))
    n_frames = int(cfg.mapper.n_frames)
    # Candidate frames for the ensemble's variance: every pool_stride-th frame (the rest get -inf).
    stride = max(1, int(cfg.get("pool_stride", 1)))
    image_shape = data.images[0].shape[1:]
    mapper, records, r = None, [], 0
    while oracle.remaining > 0:
        preds = None
        if strategy.needs_ensemble and mapper is not None:
            ids = np.arange(0, data.n_frames, stride)
            _, sub = mapper.predict(data.stacked(ids, n_frames))
            preds = np.zeros((sub.shape[0], data.n_frames, sub.shape[2]), np.float32)
            preds[:, ids] = sub
        pool = Pool(labels, seg, latents, preds)
        picks = strategy.select(pool, min(int(cfg.per_round), oracle.remaining), rng)
        if len(picks) == 0:
            break
        for f in picks:
            s = oracle.annotate(int(data.episode_of[f]), int(data.t_of[f]))
            labels.add(int(f), s, sim_env, seg, float(cfg.transition_noise_std), rng)
        ids = labels.labeled
        mapper = build_mapper(cfg.mapper, image_shape, cfg.semantics_low, cfg.semantics_high)
        trainer_cfg = OmegaConf.merge(cfg.trainer, {"steps": _steps(cfg, len(ids))})
        mapper = train_mapper(mapper, data.stacked(ids, n_frames), labels.labels[ids], trainer_cfg,
                              Path(run_dir) / f"round_{r:02d}", seed=seed + r, bootstrap=bool(cfg.mapper.get("bootstrap", True)))
        rec = {"round": r, "annotations": oracle.requests, "labeled_frames": int(len(ids))}
        if on_round is not None:
            rec.update(on_round(mapper, labels, oracle.requests))
        records.append(rec)
        r += 1
    return records


def _steps(cfg: Any, n_labeled: int) -> int:
    """Training steps for a round: ``epochs`` passes over the labelled frames, within [min_steps, max_steps]."""
    t = cfg.train_schedule
    per_epoch = max(1, n_labeled // int(cfg.trainer.batch_size))
    return int(np.clip(int(t.epochs) * per_epoch, int(t.min_steps), int(t.max_steps)))
