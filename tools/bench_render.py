"""Environment steps/s with 0, 1 and 2 cameras (visuomotor observations), Meta-World and our own scenes.

    MUJOCO_GL=egl python tools/bench_render.py                       # drawer-close-v3 + multimodal, 84 px
    MUJOCO_GL=egl python tools/bench_render.py --size 128 --steps 300 --tasks metaworld

Each configuration builds the task with ``task.obs`` = ``state`` (0 cameras) or ``visuomotor``
(agent_pos + 1 or 2 cameras), resets with seed 0 and steps random actions (no policy) for
``--steps`` steps, resetting at episode ends; the figure is steps/s of ``env.step`` (physics +
rendering every camera), after 20 warm-up steps. Renderer settings: robopolicy/envs/render.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from robopolicy.envs import make_task  # noqa: E402

TASKS = {
    "metaworld": ({"_target_": "robopolicy.envs.metaworld.MetaWorldTask", "env_name": "drawer-close-v3",
                   "camera_rotate_180": ["corner2", "gripperPOV"]}, ["corner2", "gripperPOV"]),
    # The scene has one camera; the second is the same camera rendered again under the legacy `image` key.
    "multimodal": ({"_target_": "robopolicy.envs.multimodal.MultimodalTask"}, ["top", None]),
}


def bench(task_name: str, n_cams: int, size: int, steps: int) -> dict:
    base, cams = TASKS[task_name]
    names = [c for c in cams[:n_cams] if c is not None]
    cfg = dict(base, obs="visuomotor" if n_cams else "state", cameras=names, camera_size=size)
    if None in cams[:n_cams]:
        cfg["image"] = {"enabled": True, "camera": cams[0], "size": size}
    task = make_task(cfg)
    env = task.make_env()
    try:
        rng = np.random.default_rng(0)
        obs, _ = env.reset(seed=0)
        t0 = None
        for i in range(steps + 20):
            if i == 20:
                t0 = time.perf_counter()
            obs, _, term, trunc, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
            if term or trunc:
                obs, _ = env.reset(seed=i)
        dt = time.perf_counter() - t0
    finally:
        env.close()
    return {"task": task_name, "env": task.spec.name, "cameras": n_cams, "size": size, "steps": steps,
            "steps_per_s": round(steps / dt, 1), "obs_keys": sorted(obs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--cameras", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--size", type=int, default=84)
    ap.add_argument("--steps", type=int, default=500)
    args = ap.parse_args()
    for t in args.tasks:
        for n in args.cameras:
            print(json.dumps(bench(t, n, args.size, args.steps)), flush=True)


if __name__ == "__main__":
    main()
