"""The mapper's ceiling: one ensemble trained on EVERY offline frame of a semantics cache with its true label
(no annotation budget), scored on the cache's held-out episodes. It tells whether a curve is limited by the
annotations or by the mapper and camera.

    python tools/semantics_mapper_ceiling.py --cache experiments/mwfront/cache --out /tmp/ceiling --steps 1500 \
        --proprio hand_x hand_y hand_z gripper -- task=metaworld task.env_name=push-v3 mapper.members=3 \
        mapper.encoder.channels=[16,16,16,16] trainer.batch_size=32 trainer.optim.lr=2e-3 device=cpu

``--cache``: a ``cache_dir`` written by ``robopolicy-semantics mode=active`` (its offline.npz and test.npz);
the overrides after ``--`` must give the task and mapper of that run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


def _frames(path: Path):
    import numpy as np

    c = np.load(path)
    n = int(c["n"])
    return np.concatenate([c[f"i{i}"] for i in range(n)]), np.concatenate([c[f"s{i}"] for i in range(n)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--proprio", nargs="*", default=[])
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import numpy as np
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.envs import make_task
    from robopolicy.errors import ConfigError
    from robopolicy.semantics.mapper import build_mapper, train_mapper
    from robopolicy.semantics.proprio import semantics_split
    from robopolicy.semantics.tasks import semantics_task
    from robopolicy.semantics.transfer import offline_semantics_error

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics", overrides=list(args.overrides))
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    offline, test = sorted(Path(args.cache).glob("*/offline.npz")), sorted(Path(args.cache).glob("*/test.npz"))
    if len(offline) != 1 or len(test) != 1:
        raise SystemExit(f"{args.cache!r} must hold exactly one setting's offline.npz and test.npz (found {len(offline)} and "
                         f"{len(test)}); point --cache at one run's cache_dir.")
    task = semantics_task(make_task(cfg.task))
    images, truth = _frames(offline[0])
    test_images, test_truth = _frames(test[0])
    split = semantics_split(task, args.proprio)
    if truth.shape[1] != len(task.names):
        raise ConfigError(f"The cache holds {truth.shape[1]}-d semantics, the task {len(task.names)}; give the run's task after --.")
    cols = split.predicted_index
    low, high = (np.asarray(b)[cols] for b in task.bounds())
    mapper = build_mapper(cfg.mapper, images.shape[1:], low, high, split.predicted_names)
    t0 = time.perf_counter()
    mapper = train_mapper(mapper, images[:, None], truth[:, cols], OmegaConf.merge(cfg.trainer, {"steps": args.steps}),
                          args.out, seed=int(cfg.seed), bootstrap=bool(cfg.mapper.bootstrap))
    err = offline_semantics_error(mapper, test_images[:, None], test_truth, task, args.proprio)
    print(f"{len(images)} labelled frames, {args.steps} steps, {time.perf_counter() - t0:.0f} s")
    for k, v in err.items():
        print(f"  {k}: {100 * v:.2f} cm" if k.endswith("_m") else f"  {k}: {v:.4f}")


if __name__ == "__main__":
    main()
