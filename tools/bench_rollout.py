"""Rollout throughput: env steps per second including policy inference, and where the time goes.

    MUJOCO_GL=egl OMP_NUM_THREADS=1 python tools/bench_rollout.py --task reach-v3 --steps 100

Runs ``evaluate_policy`` with 1, 2 and 4 environments in a SyncVectorEnv (one process) and an
AsyncVectorEnv (one subprocess each) on a Meta-World task with a freshly initialised tiny BESO
(untrained: it never succeeds, so every episode runs the full ``--steps``), then times the parts
on their own: one env step (state only, and with the camera image rendered), and one batched
chunk inference (amortised over the ``exec_horizon`` steps it serves). Prints a table; ``--json``
also saves the figures. Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from robopolicy.cli._hydra import CONF_DIR  # noqa: E402
from robopolicy.defaults import group_node  # noqa: E402
from robopolicy.envs import make_task  # noqa: E402
from robopolicy.evaluation import evaluate_policy  # noqa: E402


def tiny_beso(task_cfg, hidden: list[int], sampler_steps: int):
    """A freshly initialised BESO with an MLP denoiser, normalizer fitted on random samples."""
    from robopolicy.data.normalize import Normalizer
    from robopolicy.policies.build import build_policy

    cfg = OmegaConf.create({"task": task_cfg, "policy": group_node("policy", "beso"),
                            "net": OmegaConf.load(CONF_DIR / "net" / "mlp.yaml")})
    cfg.net.hidden_dims = list(hidden)
    cfg.policy.sampler.steps = int(sampler_steps)
    cfg.policy.obs_keys = ["state"]
    OmegaConf.resolve(cfg)
    spec = make_task(cfg.task).spec
    rng = np.random.default_rng(0)
    data = {"state": rng.normal(size=(256, *spec.obs["state"].shape)).astype(np.float32),
            "action": rng.uniform(-1, 1, size=(256, spec.action_dim)).astype(np.float32)}
    torch.manual_seed(0)
    return build_policy(cfg, spec, Normalizer.fit(data, {k: "minmax" for k in data})).eval()


def time_env_step(task, render: bool, n: int) -> float:
    """Mean ms of one env.step with random actions (resets excluded)."""
    env = task.make_env(render=render)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(n, task.spec.action_dim)).astype(np.float32)
    t0 = time.perf_counter()
    for a in actions:
        env.step(a)
    dt = (time.perf_counter() - t0) / n
    env.close()
    return dt * 1e3


def time_inference(policy, batch: int, n: int) -> float:
    """Median ms of one batched policy.sample call for ``batch`` observation histories."""
    obs = {"state": np.zeros((batch, policy.obs_horizon, policy.spec.obs["state"].shape[0]), np.float32)}
    policy.sample(obs, n=1)  # warm-up
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        policy.sample(obs, n=1)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="reach-v3", help="Meta-World v3 task name")
    p.add_argument("--steps", type=int, default=100, help="steps per episode")
    p.add_argument("--episodes-per-env", type=int, default=1)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--sampler-steps", type=int, default=3)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    task_cfg = OmegaConf.load(CONF_DIR / "task" / "metaworld.yaml")
    task_cfg.env_name = args.task
    task_cfg.max_episode_steps = args.steps
    task_cfg.image.size = args.image_size
    task = make_task(task_cfg)
    policy = tiny_beso(task_cfg, args.hidden, args.sampler_steps)
    n_params = sum(p.numel() for p in policy.parameters())

    rows = []
    for vector in ("sync", "async"):
        for w in args.workers:
            r = evaluate_policy(policy, task, episodes=w * args.episodes_per_env, num_envs=w, vector=vector, progress=False)
            rows.append({"vector": vector, "envs": w, "images": False, "env_steps": r["env_steps"], "wall_s": r["wall_s"],
                         "setup_s": r["env_setup_s"],
                         "steps_per_s": r["env_steps_per_s"], "chunk_ms_p50": r["latency_ms"]["p50"]})
            print(f"  {vector:5s} x{w}: {r['env_steps_per_s']:8.1f} steps/s", file=sys.stderr)
    # Images on (rendered every step, the policy still reads the state): the cost of the camera, and
    # whether subprocess workers pay off once a step is expensive.
    img_task = make_task(OmegaConf.merge(task_cfg, {"image": {"enabled": True}}))
    for vector, w in (("sync", 1), ("sync", 2), ("async", 2)):
        img = evaluate_policy(policy, img_task, episodes=w, num_envs=w, vector=vector, progress=False)
        rows.append({"vector": vector, "envs": w, "images": True, "env_steps": img["env_steps"], "wall_s": img["wall_s"],
                     "setup_s": img["env_setup_s"], "steps_per_s": img["env_steps_per_s"], "chunk_ms_p50": img["latency_ms"]["p50"]})
        print(f"  {vector:5s} x{w} images: {img['env_steps_per_s']:8.1f} steps/s", file=sys.stderr)

    n = max(50, args.steps)
    parts = {
        "env_step_ms": time_env_step(task, render=False, n=n),
        "env_step_with_render_ms": time_env_step(task, render=True, n=n),
        **{f"chunk_ms_batch{b}": time_inference(policy, b, 20) for b in sorted({1, *args.workers})},
    }
    parts["render_ms"] = parts["env_step_with_render_ms"] - parts["env_step_ms"]
    parts["policy_ms_per_step_batch1"] = parts["chunk_ms_batch1"] / policy.exec_horizon

    print(f"\nrollout throughput, {args.task}, {args.steps} steps/episode, tiny BESO ({n_params / 1e3:.0f} k params, "
          f"MLP {args.hidden}, {args.sampler_steps} sampler steps, exec_horizon {policy.exec_horizon}), "
          f"{os.cpu_count()} CPUs, torch threads 1")
    print("env steps/s: policy inference included, environment set-up (setup s) excluded")
    print("| vector | envs | images | env steps | setup s | wall s | env steps/s | chunk p50 ms |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['vector']} | {r['envs']} | {'yes' if r['images'] else 'no'} | {r['env_steps']} | {r['setup_s']:.2f} | {r['wall_s']:.2f} | "
              f"{r['steps_per_s']:.0f} | {r['chunk_ms_p50']:.2f} |")
    print("\nwhere the time goes (one process, per env step unless stated)")
    print("| part | ms |")
    print("|---|---:|")
    for k, v in parts.items():
        print(f"| {k} | {v:.3f} |")
    out = {"task": args.task, "steps": args.steps, "params": n_params, "rows": rows, "parts": parts}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
