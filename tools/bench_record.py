"""Timing of the recording loop (robopolicy-record) and of the adapter check. Prints one JSON line per case.

    python tools/bench_record.py                          # 20 episodes of 100 steps per case
    python tools/bench_record.py --episodes 5 --steps 50  # quick check

Cases:
  (a) recording a scripted device on the point-mass adapter (robot=point) at 50 Hz: tick error
      percentiles (wake-up minus due time), late ticks skipped, time of each atomic append;
  (b) the same on the simulated Meta-World push robot at its 80 Hz (episodes up to Meta-World's
      500-step limit, so the simulation steps through the whole check);
  (c) robopolicy-check-robot's latency figures for both robots (p50 / p99 of get_observation and
      send_action).
The store is written with fsync (as robopolicy-record does), into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "egl")


def robots():
    from omegaconf import OmegaConf

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.envs import make_task
    from robopolicy.runtime.fakes import PointRobot, point_spec
    from robopolicy.defaults import constructor_kwargs, group_config
    from robopolicy.runtime.sim_robot import make_sim_robot

    task = make_task(OmegaConf.merge(OmegaConf.load(CONF_DIR / "task" / "metaworld.yaml"), {"env_name": "push-v3", "max_episode_steps": 500}))
    return {"point@50Hz": PointRobot(point_spec(50.0, max_episode_steps=10**6)),
            "sim-metaworld-push@80Hz": make_sim_robot(task, **constructor_kwargs(group_config("robot", "sim", {"stop_on_success": False, "max_episode_steps": 500})))}


def bench_record(robot, episodes: int, steps: int, out: Path) -> dict:
    import numpy as np

    from robopolicy.cli.record import open_store, record
    from robopolicy.runtime.teleop import make_device

    rng = np.random.default_rng(0)
    seqs = [rng.uniform(robot.action_spec.low_array, robot.action_spec.high_array, size=(steps, robot.action_spec.dim))
            for _ in range(episodes)]
    rate_hz = robot.obs_spec.control_hz
    recorder = open_store(out, robot.obs_spec, {"source": "bench_record"})
    robot.connect()
    try:
        s = record(robot, make_device("scripted", actions=seqs), recorder, rate_hz, stop_on_done=True)
    finally:
        robot.disconnect()
    return {"rate_hz": rate_hz, "episodes_saved": s.saved, "steps_saved": s.steps_saved, "ticks": s.ticks,
            "late_ticks_skipped": s.overruns, "tick_error_ms": s.tick_error_ms, "append_ms": s.append_ms}


def bench_check(robot, samples: int) -> dict:
    from robopolicy.runtime.check_robot import check_robot

    res = check_robot(robot, robot.obs_spec.control_hz, samples=samples, latency_fraction=0.3, max_obs_age_s=0.5,
                      bound_margin=0.1, probe_clipping=True, call_timeout_s=2.0)
    return {r.name: {"passed": r.passed, "detail": r.detail} for r in res if "latency" in r.name}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--check-samples", type=int, default=400)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, robot in robots().items():
            rec = bench_record(robot, args.episodes, args.steps, Path(tmp) / f"{name}.zarr")
            print(json.dumps({"case": f"record {name}", **rec}), flush=True)
            print(json.dumps({"case": f"check {name}", **bench_check(robot, args.check_samples)}), flush=True)


if __name__ == "__main__":
    main()
