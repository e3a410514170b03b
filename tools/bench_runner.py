"""Benchmark of the real-time runner. Prints a table; the docs quote it with this command.

    python tools/bench_runner.py                       # 60 s per case (the figures of record)
    python tools/bench_runner.py --seconds 5           # quick check
    python tools/bench_runner.py --run-dir runs/push_beso   # a trained run instead of untrained weights

Cases, all on the task's simulator stepped against the wall clock (SimRobot):
  (a) beso-3 @ 50 Hz, inference in a worker thread: p99 period error, stale actions executed;
  (b) ddpm-100 @ 10 Hz (slower than the period): the loop keeps its rate, no stale action;
  (c) beso-3 @ 50 Hz through the policy server on loopback (a child process): added latency.
Untrained weights are fine for timing (the network cost does not depend on the weights).
Targets: (a) p99 period error <= 1 ms and 0 stale actions executed; (b)(c) 0 stale executed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "egl")


def build_untrained(task: str, policy: str, steps: int, sampler: str, seed: int = 0):
    """A policy of the default size for ``task`` with untrained weights (top level: the server child imports it)."""
    import torch
    from hydra import compose, initialize_config_dir

    from robopolicy.api import normalizer_keys
    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.data.normalize import Normalizer
    from robopolicy.envs import make_task
    from robopolicy.policies.build import build_policy

    torch.manual_seed(seed)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"task={task}", f"policy={policy}", "dataset=x", "run_dir=x",
                                          f"policy.sampler.name={sampler}", f"policy.sampler.steps={steps}"])
    spec = make_task(cfg.task).spec
    policy_obj = build_policy(cfg, spec, Normalizer.empty_for_spec(spec, normalizer_keys(cfg, spec)))
    return policy_obj.eval()


def load_run(run_dir: str, steps: int, sampler: str):
    from robopolicy import load

    return load(run_dir, device="auto", overrides={"policy.sampler.name": sampler, "policy.sampler.steps": steps})


def make_policy(args, policy: str, sampler: str, steps: int):
    if args.run_dir:
        return load_run(args.run_dir, steps, sampler)
    return build_untrained(args.task, policy, steps, sampler)


def run_case(args, name: str, rate_hz: float, policy: str, sampler: str, steps: int, server: bool) -> dict:
    from robopolicy.runtime.client import PolicyClient
    from robopolicy.runtime.server import ServerProcess
    from robopolicy.runtime.worker import LocalPredictor

    proc = None
    if server:
        factory, kw = (load_run, {"run_dir": args.run_dir, "steps": steps, "sampler": sampler}) if args.run_dir else \
            (build_untrained, {"task": args.task, "policy": policy, "steps": steps, "sampler": sampler})
        proc = ServerProcess(factory, kw, torch_threads=args.torch_threads)
        predictor = PolicyClient(proc.endpoint, timeout_s=max(2.0, 5.0 / rate_hz))
    else:
        predictor = LocalPredictor(make_policy(args, policy, sampler, steps), torch_threads=args.torch_threads)
    rep = timed_run(args, predictor, proc, rate_hz, merge=args.merge)
    rep["case"] = name
    return rep


def timed_run(args, predictor, proc, rate_hz: float, **runner_kw) -> dict:
    """Run the runner on the task's simulated robot for ``args.seconds`` with ``predictor``; the timing report.

    ``proc`` (a ServerProcess or None) is stopped afterwards together with the predictor.
    """
    from robopolicy.envs import make_task
    from robopolicy.runtime.report import build_report
    from robopolicy.runtime.runner import Runner, RunnerConfig
    from robopolicy.defaults import constructor_kwargs, group_config
    from robopolicy.runtime.sim_robot import make_sim_robot

    task = make_task(_task_cfg(args))
    # The simulator steps at the loop rate here; the policy's actions are spaced one loop period.
    robot = make_sim_robot(task, **constructor_kwargs(group_config("robot", "sim", {"control_hz": rate_hz, "max_episode_steps": 10**9,
                                                                               "stop_on_success": False})))
    robot.connect()
    cfg = RunnerConfig.from_defaults(seed=0, rate_hz=rate_hz, duration_s=args.seconds, action_dt_s=1.0 / rate_hz,
                                     hold_after_s=max(0.5, 20.0 / rate_hz), stop_after_s=max(30.0, args.seconds),
                                     torch_threads=args.torch_threads, **runner_kw)
    runner = Runner(robot, predictor, cfg)
    try:
        runner.run()
    finally:
        robot.disconnect()
        if proc is not None:
            predictor.close()
            proc.stop()
    return build_report(runner)


def _task_cfg(args):
    from hydra import compose, initialize_config_dir

    from robopolicy.cli._hydra import CONF_DIR

    if args.run_dir:
        from robopolicy.cli.deploy import load_run_task

        return load_run_task(args.run_dir, "last", {})[1]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"task={args.task}", "dataset=x", "run_dir=x"]).task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="duration of each case")
    ap.add_argument("--task", default="metaworld", help="task yaml for untrained policies and the simulator")
    ap.add_argument("--run-dir", default=None, help="a trained run instead of untrained weights")
    ap.add_argument("--cases", default="a,b,c")
    ap.add_argument("--merge", default="latest")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write all reports here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cases = {
        "a": ("a beso-3 thread", 50.0, "beso", "ddim", 3, False),
        "b": ("b ddpm-100 thread", 10.0, "diffusion", "ddpm", 100, False),
        "c": ("c beso-3 server", 50.0, "beso", "ddim", 3, True),
    }
    reports = [run_case(args, *cases[c]) for c in args.cases.split(",")]
    cols = ["case", "Hz", "ticks", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "misses", "overruns", "stale drop",
            "stale exec", "held", "wd trips", "infer p50 ms", "infer p99 ms", "added p50 ms"]
    rows = []
    for r in reports:
        pe, inf = r["period_error_ms"], r["inference_latency_ms"]
        added = r.get("server_added_latency_ms", {}).get("p50")
        rows.append([r["case"], f"{r['rate_hz']:g}", r["ticks"], *(f"{pe[k]:.3f}" for k in ("p50", "p99", "p99.9", "max")),
                     r["deadline_misses"], r["overruns"], r["stale_actions_dropped"], r["stale_actions_executed"],
                     r["held_ticks"], r["watchdog_trips"], f"{inf['p50']:.1f}", f"{inf['p99']:.1f}",
                     "-" if added is None else f"{added:.2f}"])
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    print(f"# python tools/bench_runner.py --seconds {args.seconds:g} --task {args.task}" + (f" --run-dir {args.run_dir}" if args.run_dir else ""))
    print(f"# cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    for row in [cols, *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2, default=str))


if __name__ == "__main__":
    main()
