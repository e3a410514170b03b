"""Benchmark: time to collect expert episodes into a store, and raw environment steps per second.

    MUJOCO_GL=egl OMP_NUM_THREADS=1 python tools/bench_collect.py                  # push-v3, 50 episodes
    python tools/bench_collect.py --task metaworld --env-name pick-place-v3 --episodes 20
    python tools/bench_collect.py --task multimodal --episodes 50 --json bench_collect.json

For each setting (state only; state + IMAGE_SIZE² camera images) it reports:
  collect_s        wall time of robopolicy.collect.collect for N episodes (expert + store writes;
                   task set-up such as Meta-World's variation pre-sampling is reported apart)
  setup_s          building the task and its first environment
  collect_steps_s  recorded steps per second during collection
  env_steps_s      bare env.step rate with uniformly random actions (no expert, no writing)
  success_rate     the expert's success rate over the N episodes
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robopolicy.collect import collect  # noqa: E402
import robopolicy.data.store  # noqa: E402,F401  (import cost stays out of the timings)
from robopolicy.envs import make_task  # noqa: E402


def task_config(task: str, env_name: str | None, image_size: int | None):
    cfg = OmegaConf.load(REPO / "tasks" / f"{task}.yaml")
    if env_name:
        cfg.env_name = env_name
    cfg.image.enabled = image_size is not None
    if image_size is not None:
        cfg.image.size = image_size
    return cfg


def env_steps_per_second(task, steps: int, seed: int) -> float:
    env = task.make_env()
    rng = np.random.default_rng(seed)
    try:
        env.reset(seed=seed)
        t0 = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32))
            if terminated or truncated:
                env.reset()
        return steps / (time.perf_counter() - t0)
    finally:
        env.close()


def bench(task_name: str, env_name: str | None, image_size: int | None, episodes: int, env_steps: int, seed: int) -> dict:
    t0 = time.perf_counter()
    task = make_task(task_config(task_name, env_name, image_size))
    task.make_env().close()  # pays one-off set-up (metaworld pre-samples its 50 variations here)
    setup_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = collect(task, episodes=episodes, out=Path(tmp) / "bench.zarr", seed=seed, progress=False)
        collect_s = time.perf_counter() - t0
    return {
        "task": task.spec.name or task_name,
        "obs": "state+image%d" % image_size if image_size else "state",
        "episodes": episodes,
        "steps": summary["steps"],
        "setup_s": round(setup_s, 2),
        "collect_s": round(collect_s, 2),
        "collect_steps_s": round(summary["steps"] / collect_s, 1),
        "env_steps_s": round(env_steps_per_second(task, env_steps, seed), 1),
        "success_rate": summary["success_rate"],
    }


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="metaworld", help="task yaml in tasks/ (default metaworld)")
    p.add_argument("--env-name", default="push-v3", help="Meta-World task name (metaworld only)")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--no-images", action="store_true", help="skip the camera-image setting")
    p.add_argument("--env-steps", type=int, default=1000, help="steps for the bare env.step rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = p.parse_args(argv)
    env_name = a.env_name if a.task == "metaworld" else None
    sizes = [None] if a.no_images else [None, a.image_size]
    rows = [bench(a.task, env_name, s, a.episodes, a.env_steps, a.seed) for s in sizes]
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    if a.json:
        Path(a.json).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
