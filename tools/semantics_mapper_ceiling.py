"""The mapper's ceiling: one ensemble trained on EVERY offline frame of a semantics run with its true label
(no annotation budget), scored on the run's held-out episodes (printed, and written to ``<out>/ceiling.json``). It
tells whether a curve is limited by the annotations or by the mapper and camera.

With ``--segments N`` it labels only N segments instead (``--segment-length`` frames each, one per episode, drawn by the
random-episodes rule, true labels: what N annotations with exact pair augmentation give). Run it for several N and
mapper settings to see how many annotations a mapper needs on a scene, without the oracle or the simulator.

    python tools/semantics_mapper_ceiling.py --out /tmp/ceiling --segments 50 --transfer 50 -- \
        cache_dir=experiments/mwfollow/cache +experiment=semantics_metaworld_push seed=1   # the mode=active run's overrides

The overrides after ``--`` are those of the ``mode=active`` run whose ``cache_dir`` holds the data
(:func:`robopolicy.semantics.experiment.cached_episodes` finds that setting's offline and held-out episodes).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def labelled_segments(offline, n: int, segment_length: int, rng) -> np.ndarray:
    """Frame ids of n segments drawn as the random-episodes strategy draws them (a new episode each time while any is
    left, the start among the episode's tiling starts), each covering segment_length frames of its episode."""
    from robopolicy.errors import ConfigError
    from robopolicy.semantics.acquisition import random_episodes, segment_cover, segment_starts

    total = sum(len(segment_starts(int(length), segment_length)) for length in np.bincount(offline.episode_of))
    if n > total:
        raise ConfigError(f"--segments {n} is more than the {total} segments of {segment_length} frames the offline data holds; "
                          "ask for fewer or leave --segments out to label every frame.")
    starts: dict[int, None] = {}  # insertion-ordered set of the drawn segment starts
    while len(starts) < n:
        chosen = np.unique(offline.episode_of[list(starts)]) if starts else np.zeros(0, int)
        starts.update((int(f), None) for f in random_episodes(offline.episode_of, offline.t_of, chosen, n - len(starts),
                                                              segment_length, rng))
    return np.unique(np.concatenate([segment_cover(f, offline.episode_of, segment_length) for f in starts]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the run's train_schedule.steps)")
    ap.add_argument("--proprio", nargs="*", default=None,
                    help="coordinates the robot measures itself (default: the run's proprio_semantics)")
    ap.add_argument("--transfer", type=int, default=0,
                    help="also run the run's controller on this mapper for this many transfer episodes (transfer.seed's block)")
    ap.add_argument("--segments", type=int, default=0,
                    help="label only this many random segments (one per episode while episodes last; 0 = every frame)")
    ap.add_argument("--segment-length", type=int, default=None, help="frames per segment (default: the run's segment_length)")
    ap.add_argument("--segment-seed", type=int, default=0, help="seed of the segment draw")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.envs import make_task
    from robopolicy.semantics.experiment import cached_episodes, controller_for, proprio_names
    from robopolicy.semantics.mapper import build_mapper, train_mapper
    from robopolicy.semantics.proprio import semantics_split
    from robopolicy.semantics.tasks import semantics_task
    from robopolicy.semantics.transfer import evaluate_transfer, offline_semantics_error
    from robopolicy.utils.io import atomic_write_json

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics", overrides=list(args.overrides))
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    task = semantics_task(make_task(cfg.task))
    (offline, truths), (test, test_truths) = cached_episodes(cfg, "offline"), cached_episodes(cfg, "test")
    k = int(cfg.mapper.n_frames)
    steps = int(cfg.train_schedule.steps) if args.steps is None else args.steps
    ids = np.arange(offline.n_frames)
    if args.segments > 0:
        length = int(cfg.segment_length) if args.segment_length is None else args.segment_length
        ids = labelled_segments(offline, args.segments, length, np.random.default_rng(args.segment_seed))
    images, truth = offline.stacked(ids, k), np.concatenate(truths)[ids]
    test_images, test_truth = test.stacked(np.arange(test.n_frames), k), np.concatenate(test_truths)
    proprio = proprio_names(cfg) if args.proprio is None else args.proprio
    split = semantics_split(task, proprio)
    cols = split.predicted_index
    bounds = task.bounds()  # Meta-World's builds a simulator: once
    low, high = (np.asarray(b)[cols] for b in bounds)
    reading_bounds = split.reading_bounds(*bounds) if cfg.mapper.proprio_input else None
    mapper = build_mapper(cfg.mapper, images.shape[2:], low, high, split.predicted_names, reading_bounds)
    t0 = time.perf_counter()
    mapper = train_mapper(mapper, images, truth[:, cols], OmegaConf.merge(cfg.trainer, {"steps": steps}),
                          args.out, seed=int(cfg.seed), bootstrap=bool(cfg.mapper.bootstrap),
                          reading=offline.reading(ids))
    err = offline_semantics_error(mapper, test_images, test_truth, task, proprio, test.reading(np.arange(test.n_frames)))
    print(f"{len(images)} labelled frames, {steps} steps, {time.perf_counter() - t0:.0f} s")
    if args.transfer > 0:
        real = OmegaConf.to_container(cfg.real_env, resolve=True)
        out = evaluate_transfer(mapper, controller_for(cfg, task), task, real, args.transfer, int(cfg.transfer.seed), k, proprio,
                                progress=bool(cfg.progress))
        err.update({key: out[key] for key in out if key.endswith("_m") or key == "success_rate"})
        err["ci95"] = out["ci95"]
    for key, v in err.items():
        print(f"  {key}: {100 * v:.2f} cm" if key.endswith("_m") else f"  {key}: {v}")
    atomic_write_json(Path(args.out) / "ceiling.json", {"labelled_frames": int(len(images)), "steps": steps, "proprio": proprio,
                                                        "segments": args.segments, "segment_seed": args.segment_seed,
                                                        "seed": int(cfg.seed), "transfer_episodes": args.transfer,
                                                        **{key: np.asarray(v).tolist() for key, v in err.items()}})


if __name__ == "__main__":
    main()
