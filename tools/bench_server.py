"""Runner timing through each policy endpoint: in-process, ZeroMQ server, openpi websocket.

    python tools/bench_server.py                     # 30 s per endpoint at 50 Hz (the figures of record)
    python tools/bench_server.py --seconds 5         # quick check
    python tools/bench_server.py --run-dir runs/push_beso

The same policy (BESO, 3 steps, default size for --task, untrained weights unless --run-dir: the
network cost does not depend on the weights) drives the task's simulator at --rate-hz (SimRobot,
wall clock) three ways: (1) in a worker thread of the runner's process; (2) a robopolicy-wire
server in a child process on 127.0.0.1; (3) an openpi-protocol websocket endpoint in a child
process on 127.0.0.1. Prints per endpoint: period error p50/p99/max, deadline misses, stale
actions executed, inference latency seen by the runner (p50/p99) and the latency the transport
adds on top of the server's own inference time (round trip minus server inference, p50/p99).
A second table times the transport alone: round trips of a trivial predictor through each server.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS.parent))
sys.path.insert(0, str(TOOLS))
os.environ.setdefault("MUJOCO_GL", "egl")

from bench_runner import build_untrained, load_run, timed_run


def run_endpoint(args, endpoint: str) -> dict:
    from robopolicy.runtime.client import PolicyClient
    from robopolicy.runtime.openpi_wire import OpenPIPredictor
    from robopolicy.runtime.server import ServerProcess
    from robopolicy.runtime.worker import LocalPredictor

    factory, kw = (load_run, {"run_dir": args.run_dir, "steps": args.steps, "sampler": "ddim"}) if args.run_dir else \
        (build_untrained, {"task": args.task, "policy": "beso", "steps": args.steps, "sampler": "ddim"})
    timeout_s = max(2.0, 5.0 / args.rate_hz)
    proc = None
    if endpoint == "in-process":
        predictor = LocalPredictor(factory(**kw), torch_threads=args.torch_threads)
    elif endpoint == "zmq":
        proc = ServerProcess(factory, kw, torch_threads=args.torch_threads)
        predictor = PolicyClient(proc.endpoint, timeout_s=timeout_s)
    else:
        proc = ServerProcess(factory, kw, bind="ws://127.0.0.1:0", torch_threads=args.torch_threads, openpi=True)
        predictor = OpenPIPredictor(proc.endpoint, timeout_s=timeout_s)
    rep = timed_run(args, predictor, proc, args.rate_hz)
    rep["endpoint"] = endpoint
    return rep


def transport_round_trips(n: int, obs_dim: int) -> list[list]:
    """Round trips of a trivial predictor (no network, no torch) through each server on loopback: the
    transport's own cost (encode, send, queue, reply), p50 / p99 / max in ms, with a (1, 2, obs_dim) observation."""
    import time

    import numpy as np

    from robopolicy.runtime.client import PolicyClient
    from robopolicy.runtime.openpi_server import serve_openpi_in_thread
    from robopolicy.runtime.openpi_wire import OpenPIPredictor
    from robopolicy.runtime.server import serve_in_thread

    class Zero:
        obs_horizon, obs_keys, supports_prefix = 2, ["state"], False

        def __call__(self, obs, prefix=None):
            return np.zeros((16, 4), np.float32)

    obs = {"state": np.zeros((1, 2, obs_dim), np.float32)}
    rows = []
    for name, start, make in [("zmq", lambda: serve_in_thread(Zero(), bind="tcp://127.0.0.1:0"), PolicyClient),
                              ("openpi", lambda: serve_openpi_in_thread(Zero()), OpenPIPredictor)]:
        srv, th = start()
        client = make(srv.endpoint, timeout_s=5.0)
        rt = []
        for _ in range(n):
            t0 = time.perf_counter()
            client(obs)
            rt.append(time.perf_counter() - t0)
        client.close()
        srv.stop()
        th.join(5)
        ms = np.array(rt) * 1000.0
        rows.append([name, n, f"{np.percentile(ms, 50):.3f}", f"{np.percentile(ms, 99):.3f}", f"{ms.max():.3f}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="duration per endpoint")
    ap.add_argument("--rate-hz", type=float, default=50.0)
    ap.add_argument("--steps", type=int, default=3, help="BESO sampler steps")
    ap.add_argument("--task", default="metaworld")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--endpoints", default="in-process,zmq,openpi")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the reports here")
    ap.add_argument("--round-trips", type=int, default=2000, help="requests per endpoint for the transport-only table")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_start = os.getloadavg()[0]
    transport = transport_round_trips(args.round_trips, 39) if args.round_trips else []
    reports = [run_endpoint(args, e) for e in args.endpoints.split(",")]
    cols = ["endpoint", "Hz", "ticks", "p50 ms", "p99 ms", "max ms", "misses", "stale exec", "held", "infer p50 ms",
            "infer p99 ms", "added p50 ms", "added p99 ms"]
    rows = []
    for r in reports:
        pe, inf = r["period_error_ms"], r["inference_latency_ms"]
        added = r.get("server_added_latency_ms") or {}
        fmt = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"
        rows.append([r["endpoint"], f"{r['rate_hz']:g}", r["ticks"], fmt(pe["p50"], 3), fmt(pe["p99"], 3), fmt(pe["max"], 3),
                     r["deadline_misses"], r["stale_actions_executed"], r["held_ticks"], fmt(inf["p50"], 1), fmt(inf["p99"], 1),
                     fmt(added.get("p50")), fmt(added.get("p99"))])
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    print(f"# python tools/bench_server.py --seconds {args.seconds:g} --rate-hz {args.rate_hz:g} --steps {args.steps} "
          f"--task {args.task}" + (f" --run-dir {args.run_dir}" if args.run_dir else ""))
    print(f"# cpus: {os.cpu_count()}, load average at start {load_start:.2f}, at end {os.getloadavg()[0]:.2f}")
    for row in [cols, *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))
    if transport:
        print("# transport only: a trivial predictor in a thread of this process, client here, 127.0.0.1")
        tcols = ["endpoint", "requests", "round trip p50 ms", "p99 ms", "max ms"]
        tw = [max(len(str(x)) for x in col) for col in zip(tcols, *transport)]
        for row in [tcols, *transport]:
            print("  ".join(str(x).rjust(w) for x, w in zip(row, tw)))
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2, default=str))


if __name__ == "__main__":
    main()
