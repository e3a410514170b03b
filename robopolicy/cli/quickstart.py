"""``robopolicy-quickstart``: the main job on the embedded default, end to end.

Collects scripted-expert demonstrations on the default task, trains BESO, evaluates the final
checkpoint over a fixed set of episodes, prints a results table and saves a plot of success and
loss over training (``<out_dir>/training.png``). Configuration: ``conf/quickstart.yaml``.
Running it again reuses the collected demos and resumes (or reuses) the finished run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from omegaconf import DictConfig

from robopolicy.cli._hydra import hydra_command
from robopolicy.training.logging import plot_training, read_metrics
from robopolicy.utils.io import atomic_write_text


def results_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 2 + max(len(v) for _, v in rows))
    return "\n".join([line] + [f"{k:<{width}}  {v}" for k, v in rows] + [line])


@hydra_command("quickstart")
def main(cfg: DictConfig) -> dict:
    from robopolicy.cli.train import train
    from robopolicy.collect import collect
    from robopolicy.envs import make_task

    t0 = time.perf_counter()
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task = make_task(cfg.task)
    name = f"{cfg.task.name}/{cfg.task.get('env_name', '')}".rstrip("/")

    print(f"[1/3] collecting {cfg.demos} expert demonstrations on {name} -> {cfg.dataset}")
    if Path(cfg.dataset).exists():
        from robopolicy.data import EpisodeStore

        store = EpisodeStore.open(cfg.dataset)
        demo = store.attrs.get("summary") or {"episodes": store.n_episodes, "steps": store.n_steps}
        print(f"      reusing {store.n_episodes} episodes already in {cfg.dataset}")
    else:
        demo = collect(task, int(cfg.demos), noise=float(cfg.noise), out=cfg.dataset, seed=int(cfg.seed),
                       stop_after_success=cfg.task.get("demo", {}).get("stop_after_success", 5))
    t_collect = time.perf_counter() - t0

    print(f"[2/3] training {cfg.policy._target_.rsplit('.', 1)[-1]} for {cfg.steps} steps -> {cfg.run_dir}")
    t1 = time.perf_counter()
    summary = train(cfg)
    t_train = time.perf_counter() - t1

    print("[3/3] results")
    final = summary.get("final") or {}
    ci = final.get("ci95", [float("nan"), float("nan")])
    lat = final.get("latency_ms", {})
    sampler = cfg.policy.get("sampler", {})
    rows = [
        ("task", name),
        ("demonstrations", f"{demo.get('episodes', '?')} episodes, {demo.get('steps', '?')} steps, expert success {demo.get('success_rate', float('nan')):.2f}"),
        ("policy", f"{cfg.policy._target_.rsplit('.', 1)[-1]} ({sampler.get('name', '-')}, {sampler.get('steps', '-')} steps), net {cfg.net._target_.rsplit('.', 1)[-1]}"),
        ("training", f"{summary.get('step')} steps in {summary.get('train_time_s', t_train):.0f} s"),
        ("success rate", f"{final.get('success_rate', float('nan')):.3f}  95% CI [{ci[0]:.3f}, {ci[1]:.3f}]  ({final.get('episodes', 0)} episodes)"),
    ]
    if "eval/success_rate_max" in summary:
        rows.append(("periodic eval", f"max {summary['eval/success_rate_max']:.2f}, mean of last 10 {summary['eval/success_rate_last10_mean']:.2f}"))
    if lat:
        rows.append(("latency per chunk", f"p50 {lat.get('p50', float('nan')):.1f} ms, p90 {lat.get('p90', float('nan')):.1f} ms"))
    rows.append(("wall time", f"{time.perf_counter() - t0:.0f} s (collect {t_collect:.0f} s)"))
    png = out_dir / "training.png"
    plot_training(read_metrics(Path(cfg.run_dir) / "metrics.jsonl"), png, f"BESO on {name}")
    rows.append(("plot", str(png)))
    print(results_table(rows))
    atomic_write_text(out_dir / "results.json", json.dumps({"rows": dict(rows), "final": final}, indent=2, default=str))
    return summary


if __name__ == "__main__":
    main()
