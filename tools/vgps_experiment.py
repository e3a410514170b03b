"""V-GPS on mixed-quality Meta-World data end to end in one script.

For each task: collect a mixed-quality dataset, train the base policies on it (BESO and Diffusion
Policy), train an IQL and a Cal-QL critic, then evaluate the base policy, V-GPS with each critic at
each K, and the random-pick control; every evaluation writes an ``eval.json`` that
``robopolicy-report`` aggregates (with Wilson intervals) and that records the per-chunk latency.

Mixed-data recipe (per task, N = --episodes, collect seeds disjoint per part)::

    30% expert   noise=0.0                    (scripted Meta-World expert)
    40% noisy    noise=--noise (default 0.5)  (expert + Gaussian action noise of that std, clipped)
    30% failing  fail_fraction=1.0            (expert prefix of U[0, 0.3] x max steps, then a random walk)

Successful episodes stop 5 steps after success (``task.demo.stop_after_success``); sparse rewards
are the last 3 steps of successful episodes, gamma = 0.98 (V-GPS).

Full scale (hours of CPU; the lead decides what to run)::

    python tools/vgps_experiment.py --out experiments/vgps --tasks push-v3 pick-place-v3 door-open-v3 \
        --policies beso diffusion --episodes 300 --policy-steps 20000 --critic-steps 20000 \
        --eval-episodes 100 --ks 1 4 10 32 --random-ks 10 32
    robopolicy-report experiments/vgps/evals

Tiny smoke run (minutes)::

    python tools/vgps_experiment.py --quick --out /tmp/vgps_quick

Every stage is skipped when its output exists (a killed run continues; trainers resume).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robopolicy.cli._hydra import CONF_DIR


def compose(name: str, overrides: list[str]):
    from hydra import compose as hcompose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return hcompose(name, overrides=overrides)


def collect_mixed(task: str, out: Path, n: int, noise: float, seed: int, max_steps: int | None) -> Path:
    """The three parts of the recipe, merged into one store ``out/data/<task>.zarr``."""
    from robopolicy.collect import collect
    from robopolicy.data.store import EpisodeStore

    path = out / "data" / f"{task}.zarr"
    if path.exists():
        return path
    task_cfg = compose("collect", [f"task.env_name={task}"] + ([f"task.max_episode_steps={max_steps}"] if max_steps else [])).task
    n_expert, n_fail = round(0.3 * n), round(0.3 * n)
    parts = [("expert", n_expert, 0.0, 0.0), ("noisy", n - n_expert - n_fail, noise, 0.0), ("failing", n_fail, 0.0, 1.0)]
    stores, summaries = [], {}
    for i, (name, count, sigma, fail) in enumerate(parts):
        part = out / "data" / "parts" / f"{task}_{name}.zarr"
        summaries[name] = collect(task_cfg, count, noise=sigma, fail_fraction=fail, out=part, seed=seed + 100_000 * i,
                                  progress=False, overwrite=True)
        stores.append(EpisodeStore.open(part))
    merged = EpisodeStore.create(path.with_suffix(".tmp.zarr"), stores[0].spec, overwrite=True,
                                 attrs={"provenance": {"recipe": "vgps_experiment mixed", "parts": summaries}})
    for s in stores:
        for ep in s.iter_episodes():
            merged.append_episode(ep)
    path.with_suffix(".tmp.zarr").rename(path)
    return path


def done_training(run_dir: Path, steps: int) -> bool:
    p = run_dir / "summary.json"
    return p.is_file() and json.loads(p.read_text()).get("step") == steps


def train_policy(task: str, policy: str, data: Path, run_dir: Path, a) -> None:
    from robopolicy.cli.train import train

    if done_training(run_dir, a.policy_steps):
        return
    over = [f"task.env_name={task}", f"policy={policy}", f"dataset={data}", f"run_dir={run_dir}", f"steps={a.policy_steps}",
            f"batch_size={a.batch_size}", "wandb.mode=disabled", "progress=false", "final_eval.episodes=0", f"device={a.device}",
            f"ckpt_every={a.policy_steps}", f"val_every={a.policy_steps}"] + a.policy_overrides
    train(compose("train", over))


def train_critic_run(task: str, critic: str, data: Path, run_dir: Path, a) -> None:
    from robopolicy.value.train import train_critic

    if done_training(run_dir, a.critic_steps):
        return
    over = [f"task.env_name={task}", f"critic={critic}", f"dataset={data}", f"run_dir={run_dir}", f"steps={a.critic_steps}",
            f"batch_size={a.batch_size}", "wandb.mode=disabled", "progress=false", f"device={a.device}",
            f"ckpt_every={a.critic_steps}", f"val_every={a.critic_steps}"]
    train_critic(compose("train_critic", over))


def evaluate(run_dir: Path, out: Path, labels: dict, steer: list[str], a) -> None:
    """One robopolicy-eval job; ``labels`` become the overrides the report groups by."""
    from robopolicy.cli.eval import evaluate_run
    from robopolicy.utils import atomic_write_json

    if out.is_file():
        return
    over = [f"run_dir={run_dir}", f"out={out}", f"episodes={a.eval_episodes}", f"seed={a.eval_seed}", "wandb.mode=disabled",
            "progress=false", f"device={a.device}"] + steer + ([f"max_episode_steps={a.max_steps}"] if a.max_steps else [])
    result = evaluate_run(compose("eval", over))
    result["overrides"] = [f"{k}={v}" for k, v in labels.items()]
    atomic_write_json(out, result)


def main() -> None:
    ap = argparse.ArgumentParser(description="V-GPS experiment on mixed-quality Meta-World data.")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--quick", action="store_true", help="tiny smoke settings (overrides the sizes below)")
    ap.add_argument("--tasks", nargs="+", default=["push-v3", "pick-place-v3", "door-open-v3"])
    ap.add_argument("--policies", nargs="+", default=["beso", "diffusion"])
    ap.add_argument("--critics", nargs="+", default=["iql", "calql"])
    ap.add_argument("--episodes", type=int, default=300, help="episodes in each task's mixed dataset")
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--policy-steps", type=int, default=20000)
    ap.add_argument("--critic-steps", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--eval-episodes", type=int, default=100)
    ap.add_argument("--eval-seed", type=int, default=50_000, help="episode i of every evaluation resets with seed + i")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 4, 10, 32])
    ap.add_argument("--random-ks", type=int, nargs="*", default=[10, 32], help="K values of the random-pick control (none: skip it)")
    ap.add_argument("--max-steps", type=int, default=None, help="episode length cap for collection and evaluation")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policy-overrides", nargs="*", default=[], help="extra robopolicy-train overrides, e.g. net=mlp")
    a = ap.parse_args()
    if a.quick:
        a.tasks, a.policies, a.episodes, a.policy_steps, a.critic_steps = a.tasks[:1] if a.tasks != ap.get_default("tasks") else ["reach-v3"], ["beso"], 10, 30, 30
        a.batch_size, a.eval_episodes, a.ks, a.random_ks, a.max_steps = 32, 2, [1, 4], [4], a.max_steps or 60
        a.policy_overrides = a.policy_overrides or ["net=mlp"]

    evals = a.out / "evals"
    for task in a.tasks:
        data = collect_mixed(task, a.out, a.episodes, a.noise, a.seed, a.max_steps)
        for critic in a.critics:
            train_critic_run(task, critic, data, a.out / "runs" / f"{task}_{critic}", a)
        for policy in a.policies:
            run = a.out / "runs" / f"{task}_{policy}"
            train_policy(task, policy, data, run, a)
            base = {"task.env_name": task, "policy": policy}
            evaluate(run, evals / task / policy / "base" / "eval.json", {**base, "critic": "none", "steer.k": 1, "steer.random": False}, [], a)
            # K in the order given (most informative first, so a run cut short still has whole comparisons):
            # at each K every critic, then the random-pick control at that K.
            for k in list(dict.fromkeys(list(a.ks) + list(a.random_ks))):
                for critic in a.critics if k in a.ks else []:
                    evaluate(run, evals / task / policy / f"{critic}_k{k}" / "eval.json",
                             {**base, "critic": critic, "steer.k": k, "steer.random": False},
                             ["steer=vgps", f"steer.critic={a.out / 'runs' / f'{task}_{critic}'}", f"steer.k={k}", "steer.beta=0"], a)
                if k in a.random_ks:
                    evaluate(run, evals / task / policy / f"random_k{k}" / "eval.json",
                             {**base, "critic": "random", "steer.k": k, "steer.random": True},
                             ["steer=vgps", f"steer.critic={a.out / 'runs' / f'{task}_{a.critics[0]}'}", f"steer.k={k}", "steer.random=true"], a)
    print(latency_table(evals))
    print(f"done: aggregate success with  robopolicy-report {evals}")


def latency_table(evals: Path) -> str:
    """Per-chunk latency p50 of every evaluation and its ratio to the base policy's (same task/policy);
    written to ``evals/latency.md``. Evaluation latency includes the simulator's load on the CPU:
    tools/bench_vgps.py gives the clean figure."""
    from robopolicy.utils import atomic_write_text

    rows = ["| task | policy | condition | success | 95% CI | latency p50 (ms) | overhead vs base |", "|---|---|---|---:|---:|---:|---:|"]
    for task_dir in sorted(p for p in evals.iterdir() if p.is_dir()):
        for pol_dir in sorted(p for p in task_dir.iterdir() if p.is_dir()):
            res = {d.name: json.loads((d / "eval.json").read_text()) for d in sorted(pol_dir.iterdir()) if (d / "eval.json").is_file()}
            base = res.get("base", {}).get("latency_ms", {}).get("p50")
            for cond, r in res.items():
                lat = r["latency_ms"]["p50"]
                ratio = f"{lat / base:.2f}x" if base and lat is not None else "-"
                rows.append(f"| {task_dir.name} | {pol_dir.name} | {cond} | {r['success_rate']:.3f} | "
                            f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | {lat:.2f} | {ratio} |")
    text = "\n".join(rows) + "\n"
    atomic_write_text(evals / "latency.md", text)
    return text


if __name__ == "__main__":
    main()
