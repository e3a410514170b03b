"""The active-learning loop: rounds of (acquire, annotate, augment, retrain) until the budget is spent.

Every round trains a fresh mapper for exactly ``train_schedule.steps`` optimiser steps, whatever
the size of the labelled set, so strategies that label 10 frames and strategies that label 1,000
get the same training budget per round. After each round the loop's state (labels, the
generators, the records) goes to ``<run_dir>/state.json`` + ``round_NN/labels.npz``; a run started again on
the same ``run_dir`` continues after the last finished round and gives the same result.

Transition noise (``cfg.transition_noise``, a fraction of each semantic dimension's range per
simulated step) has its own generator, seeded from ``(seed, 2)``: turning it on changes the
augmented labels, never which frames a strategy picks from the same labelled set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
from omegaconf import OmegaConf

from robopolicy.errors import ConfigError
from robopolicy.semantics.augment import FollowReading, LabelSet
from robopolicy.semantics.data import RealEpisodes
from robopolicy.semantics.dynamics import DynamicsGate
from robopolicy.semantics.mapper import MapperEnsemble, build_mapper, load_mapper, train_mapper
from robopolicy.semantics.noise import range_std
from robopolicy.semantics.oracle import AnnotationOracle
from robopolicy.semantics.proprio import SemanticsSplit
from robopolicy.semantics.strategies import Pool, Strategy
from robopolicy.utils import atomic_write_bytes, atomic_write_json

RoundFn = Callable[[MapperEnsemble, LabelSet, int], dict]


TRANSITION_STREAM = 2  # the transition-noise generator is default_rng((seed, TRANSITION_STREAM))


def pool_predictions(mapper, data, stride: int, n_frames: int) -> np.ndarray:
    """The ensemble's member predictions (M, N, D) on every ``stride``-th offline frame of ``data``; zeros elsewhere
    (so their variance is 0): what variance and hybrid score."""
    ids = np.arange(0, data.n_frames, max(1, int(stride)))
    _, sub = mapper.predict(data.stacked(ids, n_frames), data.reading(ids))
    preds = np.zeros((sub.shape[0], data.n_frames, sub.shape[2]), np.float32)
    preds[:, ids] = sub
    return preds


def _save_state(run_dir: Path, r: int, labels: LabelSet, rng: np.random.Generator, oracle: AnnotationOracle,
                records: list[dict], noise_rng: np.random.Generator) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, labels=labels.labels, age=labels.age, annotated=np.asarray(labels.annotated, int))
    name = f"round_{r:02d}/labels.npz"
    atomic_write_bytes(run_dir / name, buf.getvalue())
    # The json is written last and names its labels file, so a kill between the two writes leaves the previous round's state.
    atomic_write_json(run_dir / "state.json", {"rounds_done": r + 1, "labels": name, "rng": rng.bit_generator.state,
                                               "oracle_rng": None if oracle.rng is None else oracle.rng.bit_generator.state,
                                               "transition_rng": noise_rng.bit_generator.state,
                                               "oracle_requests": oracle.requests, "records": records})


def _load_state(run_dir: Path, labels: LabelSet, rng: np.random.Generator, oracle: AnnotationOracle,
                noise_rng: np.random.Generator) -> tuple[int, list[dict]]:
    """Restore a saved loop into ``labels``, ``rng``, ``oracle`` and ``noise_rng``; returns (rounds done, records)."""
    js = run_dir / "state.json"
    if not js.exists():
        return 0, []
    st = json.loads(js.read_text())
    z = np.load(run_dir / st["labels"])
    labels.labels[:] = z["labels"]
    labels.age[:] = z["age"]
    labels.annotated = [int(f) for f in z["annotated"]]
    rng.bit_generator.state = st["rng"]
    if oracle.rng is not None:  # a noise-free oracle has no generator
        oracle.rng.bit_generator.state = st["oracle_rng"]
    if "transition_rng" in st:  # absent in states saved before transition noise had its own generator
        noise_rng.bit_generator.state = st["transition_rng"]
    oracle.requests = int(st["oracle_requests"])
    return int(st["rounds_done"]), list(st["records"])


def run_active(strategy: Strategy, data: RealEpisodes, oracle: AnnotationOracle, sim_env, cfg: Any, run_dir: str | Path,
               latents: np.ndarray | None = None, on_round: RoundFn | None = None, seed: int = 0,
               resume: bool = True, split: SemanticsSplit | None = None, gate: DynamicsGate | None = None,
               follow: FollowReading | None = None) -> list[dict]:
    """Annotate ``cfg.per_round`` frames per round until ``oracle`` refuses; retrain the mapper each round.

    cfg: the ``semantics`` config (mapper, trainer, train_schedule.steps, segment_length,
    transition_noise, per_round, pool_stride, semantics_low / semantics_high). ``on_round(mapper, labels, annotations) -> dict``
    evaluates a round; the returned list holds one record per round with ``annotations``,
    ``labeled_frames`` and what it returned. ``resume``: continue from ``run_dir``'s saved state.
    ``split``: which coordinates the robot measures itself (``semantics.proprio_semantics``); the labels
    stay full vectors, the mapper is trained on the others only. None: the mapper predicts all of them.
    ``gate``: pair augmentation keeps a segment only while other object dynamics agree (``semantics.augment_dynamics``).
    ``follow``: the task's reading follower for the replays (``semantics.augment_follow_reading``).
    """
    run_dir = Path(run_dir)
    rng = np.random.default_rng(seed)
    noise_rng = np.random.default_rng((seed, TRANSITION_STREAM))
    seg = int(cfg.segment_length) if strategy.augment else 1
    transition_std = range_std(cfg.transition_noise, cfg.semantics_low, cfg.semantics_high, "semantics.transition_noise")
    labels = LabelSet(data, len(cfg.semantics_low))
    n_frames = int(cfg.mapper.n_frames)
    # Candidate frames for the ensemble's variance: every pool_stride-th frame (the rest get 0).
    stride = max(1, int(cfg.pool_stride))
    image_shape = data.images[0].shape[1:]
    steps = int(cfg.train_schedule.steps)
    # The mapper's targets: the coordinates the robot does not measure itself (all of them without a split).
    cols = np.arange(len(cfg.semantics_low)) if split is None else split.predicted_index
    names = None if split is None else list(split.predicted_names)
    low, high = [float(cfg.semantics_low[int(i)]) for i in cols], [float(cfg.semantics_high[int(i)]) for i in cols]
    reading_bounds = None
    if bool(cfg.mapper.proprio_input):  # the mapper's head also gets the robot's reading at each frame
        if split is None or data.proprio is None:
            raise ConfigError("mapper.proprio_input=true needs the robot's reading with every offline frame (RealEpisodes.proprio) "
                              "and the task's split (split=); these episodes have none: collect them again (a new cache_dir).")
        reading_bounds = split.reading_bounds(cfg.semantics_low, cfg.semantics_high)
    mapper, records, r = None, [], 0
    if resume:
        r, records = _load_state(run_dir, labels, rng, oracle, noise_rng)
        if r > 0 and strategy.needs_ensemble:
            mapper = load_mapper(run_dir / f"round_{r - 1:02d}")
    while oracle.remaining > 0:
        preds = None
        if strategy.needs_ensemble and mapper is not None:
            preds = pool_predictions(mapper, data, stride, n_frames)
        pool = Pool(labels, seg, latents, preds)
        picks = strategy.select(pool, min(int(cfg.per_round), oracle.remaining), rng)
        if len(picks) == 0:
            break
        for f in picks:
            s = oracle.annotate(int(data.episode_of[f]), int(data.t_of[f]))
            labels.add(int(f), s, sim_env, seg, transition_std, noise_rng, gate, follow)
        ids = labels.labeled
        mapper = build_mapper(cfg.mapper, image_shape, low, high, names, reading_bounds)
        trainer_cfg = OmegaConf.merge(cfg.trainer, {"steps": steps})
        mapper = train_mapper(mapper, data.stacked(ids, n_frames), labels.labels[ids][:, cols], trainer_cfg,
                              run_dir / f"round_{r:02d}", seed=seed + r, bootstrap=bool(cfg.mapper.bootstrap),
                              reading=data.reading(ids))
        rec = {"round": r, "annotations": oracle.requests, "labeled_frames": int(len(ids)), "train_steps": steps}
        if on_round is not None:
            rec.update(on_round(mapper, labels, oracle.requests))
        records.append(rec)
        _save_state(run_dir, r, labels, rng, oracle, records, noise_rng)
        r += 1
    return records
