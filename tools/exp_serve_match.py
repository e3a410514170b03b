"""Served policies against in-process evaluation on the same seeds, end to end with the commands.

A goal-conditioned BESO and a V-GPS policy (the same BESO, goal-free, re-ranked by an IQL critic)
on the multimodal task:

1. ``robopolicy-collect`` mixed-quality demos, ``robopolicy-train`` (goal.keys=[state]) and
   ``robopolicy-train-critic``;
2. ``robopolicy-eval`` of each, N episodes on seed block ``--seed`` (goal-conditioned with ``goal=``,
   V-GPS with ``steer=vgps``);
3. ``robopolicy-policy-server`` for each (ZeroMQ; also openpi's websocket endpoint for the
   goal-conditioned one) and ``robopolicy-deploy server=... runner=eval_match`` on the simulated
   robot, same seeds, N episodes, in slow motion (robot.control_hz and rate_hz both ``--rate-hz``:
   the environment steps are the task's, only the wall clock between them is longer);
4. per-episode agreement (same success; identical episode: same success, length and return) and
   both success rates with Wilson intervals, the runner's timing figures, -> OUT/serve_match.json.

    python tools/exp_serve_match.py --out experiments/serve [--episodes 50] [--rate-hz 5]

Every stage is skipped when its output exists. Run it with ``nice -n 10`` and OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from robopolicy.evaluation.stats import wilson_interval
from robopolicy.utils import atomic_write_json

# The goal for every episode: the agent at rest at the centre of the goal region ([-0.15, 0.15] x
# [0.7, 0.8] in tasks/multimodal.yaml), i.e. a state (agent xy, agent velocity, goal xy) to reach.
GOAL_STATE = [0.0, 0.75, 0.0, 0.0, 0.0, 0.75]
CONDITIONS = ("goal_zmq", "goal_openpi", "vgps_zmq")


def command(name: str) -> str:
    """A console script of this environment (the venv's bin beside the interpreter, else PATH)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def run(args: list[str], log: Path) -> None:
    print("$", " ".join(args), flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.call(args, stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        sys.exit(f"{args[0]} failed (exit {rc}); see {log}")
    print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``robopolicy-policy-server`` as a child process (ours: stopped with SIGINT by its pid)."""

    def __init__(self, args: list[str], log: Path, timeout_s: float = 300.0):
        print("$", " ".join(args), "&", flush=True)
        self.log = open(log, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout_s
        for line in self.proc.stdout:  # the server prints "device ...; Ctrl-C stops" once it serves
            self.log.write(line)
            self.log.flush()
            if line.startswith("device "):
                break
            if time.monotonic() > deadline:
                break
        if self.proc.poll() is not None:
            sys.exit(f"the policy server exited (code {self.proc.returncode}); see {log}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        rest = self.proc.stdout.read() if self.proc.stdout else ""
        self.log.write(rest)
        self.log.close()


def compare(ev: dict, rep: dict) -> dict:
    """Per-episode agreement of an eval.json and a deploy timing.json over the seeds both ran
    (the served run may cover only the first of the evaluation's episodes)."""
    by_seed = {e["seed"]: e for e in rep["episode_results"]}
    late = {e["seed"]: (e["late_chunks"], e["late_sends"]) for e in rep.get("episode_timing", [])}  # robopolicy-deploy's
    rows, same_success, identical, ev_succ = [], 0, 0, []
    for seed, s, n, r in zip(ev["seeds"], ev["successes"], ev["episode_lengths"], ev["returns"]):
        d = by_seed.get(seed)
        if d is None:
            continue
        ev_succ.append(bool(s))
        ok = bool(d["success"]) == bool(s)
        same = ok and int(d["steps"]) == int(n) and abs(float(d["reward"]) - float(r)) <= 1e-6 * max(1.0, abs(float(r)))
        same_success += ok
        identical += same
        rows.append({"seed": seed, "eval": [bool(s), int(n), float(r)], "served": [bool(d["success"]), int(d["steps"]), float(d["reward"])],
                     "same_success": ok, "identical": same, "late_chunks_sends": late.get(seed)})
    n_ev, k_ev = len(ev_succ), int(sum(ev_succ))
    n_sv, k_sv = len(rep["episode_results"]), int(sum(bool(e["success"]) for e in rep["episode_results"]))
    n_all, k_all = len(ev["successes"]), int(sum(ev["successes"]))
    return {
        "episodes": n_ev,
        "eval": {"success_rate": k_ev / n_ev, "ci95": list(wilson_interval(k_ev, n_ev)), "n_success": k_ev},
        "eval_all": {"episodes": n_all, "success_rate": k_all / n_all, "ci95": list(wilson_interval(k_all, n_all))},
        "served": {"success_rate": k_sv / n_sv if n_sv else None, "ci95": list(wilson_interval(k_sv, n_sv)) if n_sv else None,
                   "n_success": k_sv, "episodes": n_sv},
        "same_success": same_success,
        "identical_episodes": identical,
        "differing_seeds": [r["seed"] for r in rows if not r.get("identical")],
        # (late chunks, late sends) of each differing episode, and how many episodes had any late event
        "differing_late_events": {r["seed"]: r["late_chunks_sends"] for r in rows if not r.get("identical")},
        "episodes_with_late_events": sum(1 for r in rows if r["late_chunks_sends"] and any(r["late_chunks_sends"])) if late else None,
        "identical_without_late_events": sum(1 for r in rows if r["identical"] and r["late_chunks_sends"] == (0, 0)) if late else None,
        "without_late_events": sum(1 for r in rows if r["late_chunks_sends"] == (0, 0)) if late else None,
        "timing": {k: rep.get(k) for k in ("rate_hz", "ticks", "period_error_ms", "send_after_tick_ms", "deadline_misses",
                                           "overruns", "stale_actions_executed", "held_ticks", "starved_ticks", "watchdog_trips",
                                           "inference_latency_ms", "inference_errors", "server_round_trip_ms",
                                           "server_added_latency_ms", "server_reconnects", "stop_reason")},
        "per_episode": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="experiments/serve")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=3, help="seed block: episode i resets with seed * 10000 + i")
    ap.add_argument("--demos", type=int, default=100)
    ap.add_argument("--steps", type=int, default=800, help="BESO training steps")
    ap.add_argument("--critic-steps", type=int, default=1000)
    ap.add_argument("--k", type=int, default=8, help="V-GPS candidates per re-plan")
    ap.add_argument("--rate-hz", type=float, default=5.0, help="slow motion: robot.control_hz = rate_hz (task: 10 Hz)")
    ap.add_argument("--conditions", nargs="*", default=list(CONDITIONS), help="the deploys to run (others found in --out are reported)")
    a = ap.parse_args()

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    demos, beso, critic, goal = out / "demos.zarr", out / "beso_goal", out / "critic", out / "goal.npz"
    common = ["progress=false", "wandb.mode=disabled"]
    if not demos.exists():
        run([command("robopolicy-collect"), "task=multimodal", f"episodes={a.demos}", "fail_fraction=0.3", f"out={demos}",
             "progress=false"], out / "collect.log")
    if not (beso / "checkpoints" / "latest.json").exists():
        run([command("robopolicy-train"), "task=multimodal", "policy=beso", "goal.keys=[state]", f"dataset={demos}",
             f"steps={a.steps}", f"run_dir={beso}", "final_eval.episodes=0", *common], out / "beso_goal.train.log")
    if not (critic / "checkpoints" / "latest.json").exists():
        run([command("robopolicy-train-critic"), "task=multimodal", f"dataset={demos}", "critic=iql", f"steps={a.critic_steps}",
             f"run_dir={critic}", *common], out / "critic.train.log")
    if not goal.exists():
        np.savez(goal, state=np.asarray(GOAL_STATE, np.float32))

    steer = ["steer=vgps", f"steer.critic={critic}", f"steer.k={a.k}"]
    kinds = {"goal": {"eval": [f"goal={goal}"], "server": [], "deploy": [f"goal={goal}"]},
             "vgps": {"eval": steer, "server": steer, "deploy": []}}
    n, seed = a.episodes, a.seed
    for kind, kw in kinds.items():
        ev = out / f"eval_{kind}.json"
        if not ev.exists():
            run([command("robopolicy-eval"), f"run_dir={beso}", *kw["eval"], f"episodes={n}", f"seed={seed}", "device=cpu",
                 f"out={ev}", *common], out / f"eval_{kind}.log")

    slow = [f"rate_hz={a.rate_hz:g}", f"robot.control_hz={a.rate_hz:g}", "robot.phase=0.9", "runner.deadline_frac=0.85"]
    results = {}
    for cond in a.conditions:
        kind, endpoint = cond.split("_")
        dep = out / f"deploy_{cond}"
        if not (dep / "timing.json").exists():
            port = free_port()
            bind = [f"bind=tcp://127.0.0.1:{port}"] + ([f"openpi=ws://127.0.0.1:{free_port()}"] if endpoint == "openpi" else [])
            server = Server([command("robopolicy-policy-server"), f"run_dir={beso}", *bind, *kinds[kind]["server"], "device=cpu",
                             "torch_threads=1"], out / f"server_{cond}.log")
            try:
                addr = f"tcp://127.0.0.1:{port}" if endpoint == "zmq" else bind[1].split("=", 1)[1]
                run([command("robopolicy-deploy"), f"run_dir={beso}", f"server={addr}", *kinds[kind]["deploy"], "runner=eval_match",
                     *slow, "duration_s=0", f"runner.episodes={n}", f"seed={seed}", "runner.server_timeout_s=5.0",
                     f"out={dep}", "plot=false"], out / f"deploy_{cond}.log")
            finally:
                server.stop()
    for cond in CONDITIONS:  # every condition deployed so far, each at the rate it ran at
        timing = out / f"deploy_{cond}" / "timing.json"
        rep = json.loads(timing.read_text()) if timing.exists() else {}
        if rep.get("episode_results"):
            results[cond] = compare(json.loads((out / f"eval_{cond.split('_')[0]}.json").read_text()), rep)

    summary = {"seed": seed, "task_control_hz": 10.0, "k": a.k, "goal": GOAL_STATE,
               "load_average_at_end": os.getloadavg(), "conditions": results}
    atomic_write_json(out / "serve_match.json", summary)
    print(f"\n{'condition':<12} {'Hz':>4} {'eval success [95% CI]':<26} {'served success [95% CI]':<26} same success  identical  "
          f"misses  stale  held  infer p99/max ms")
    for cond, r in results.items():
        e, s, t = r["eval"], r["served"], r["timing"]
        lat = t["inference_latency_ms"] or {}
        print(f"{cond:<12} {t['rate_hz']:>4g} {e['success_rate']:.2f} [{e['ci95'][0]:.2f}, {e['ci95'][1]:.2f}]{'':<12} "
              f"{s['success_rate']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]{'':<12} {r['same_success']:>3}/{r['episodes']:<8} "
              f"{r['identical_episodes']:>3}/{r['episodes']:<5} {t['deadline_misses']:>6} {t['stale_actions_executed']:>6} "
              f"{t['held_ticks']:>5}  {lat.get('p99', float('nan')):.0f}/{lat.get('max', float('nan')):.0f}")
        if r["differing_seeds"]:
            print(f"  differing seeds (late chunks, late sends): {r['differing_late_events']}")
        if r["without_late_events"] is not None:
            print(f"  episodes with a late chunk or send: {r['episodes_with_late_events']}; "
                  f"identical among those without: {r['identical_without_late_events']}/{r['without_late_events']}")
    print(f"-> {out / 'serve_match.json'}")


if __name__ == "__main__":
    main()
