"""Policy server and client over ZeroMQ: round trip, token, and the runner riding out a server
that is killed and restarted mid-run (watchdog holds, then resumes)."""

import socket
import threading
import time

import numpy as np
import pytest

from robopolicy.errors import ConfigError
from robopolicy.runtime.client import PolicyClient, ServerTimeout
from robopolicy.runtime.clock import now
from robopolicy.runtime.fakes import GoToGoal, PointEnv, point_spec
from robopolicy.runtime.runner import Runner, RunnerConfig
from robopolicy.runtime.server import ServerProcess, serve_in_thread
from robopolicy.runtime.sim_robot import SimRobot


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_round_trip_and_token():
    port = free_port()
    server, th = serve_in_thread(GoToGoal(horizon=5), bind=f"tcp://127.0.0.1:{port}", token="s3cret")
    try:
        assert server.endpoint.startswith("tcp://127.0.0.1:")
        client = PolicyClient(f"tcp://127.0.0.1:{port}", token="s3cret", timeout_s=5.0)
        assert client.obs_horizon == 2 and client.obs_keys == ["pos"]
        obs = {"pos": np.zeros((1, 2, 2), np.float32)}
        out = client(obs)
        assert out.shape == (5, 2) and out.dtype == np.float32
        assert np.allclose(out, GoToGoal(horizon=5)(obs))
        client.close()
        with pytest.raises(ConfigError, match="token"):
            PolicyClient(f"tcp://127.0.0.1:{port}", token="wrong", timeout_s=2.0, connect_timeout_s=2.0)
        assert server.rejected >= 1
    finally:
        server.stop()
        th.join(5)


def test_no_server_is_one_clear_error():
    with pytest.raises(ConfigError, match="No policy server"):
        PolicyClient(f"tcp://127.0.0.1:{free_port()}", timeout_s=0.2, connect_timeout_s=0.5)


def test_server_killed_mid_run_watchdog_then_resume():
    port = free_port()
    bind = f"tcp://127.0.0.1:{port}"
    proc = ServerProcess(GoToGoal, {"horizon": 8}, bind=bind)
    client = PolicyClient(bind, timeout_s=0.3)
    spec = point_spec(50.0, max_episode_steps=100000)
    # One long episode (no stop at the goal), so the kill lands mid-episode, where the watchdog runs.
    robot = SimRobot.from_defaults(lambda: PointEnv(spec), spec, stop_on_success=False)
    robot.connect()
    cfg = RunnerConfig.from_defaults(seed=0, rate_hz=50.0, duration_s=10.0, hold_after_s=0.3, stop_after_s=20.0, first_chunk_timeout_s=30.0)
    runner = Runner(robot, client, cfg)
    marks = {}

    def chaos():
        # Kill only once the loop runs on served chunks (the server's start-up time varies with load).
        t_give_up = now() + 60.0
        while now() < t_give_up and not getattr(getattr(runner, "worker", None), "latencies", None):
            time.sleep(0.05)
        time.sleep(1.0)
        proc.kill()
        marks["killed"] = now()
        time.sleep(1.0)
        marks["restarted"] = now()
        marks["proc"] = ServerProcess(GoToGoal, {"horizon": 8}, bind=bind)
        marks["up"] = now()

    th = threading.Thread(target=chaos)
    th.start()
    try:
        runner.run()
    finally:
        th.join()
        if "proc" in marks:
            marks["proc"].stop()
        proc.stop()
        client.close()
    st = runner.stats
    assert st.stop_reason == "duration", st.stop_reason
    assert runner.watchdog.trips >= 1  # the dead server looked like a stalled policy
    held = np.array(st.held_at_s)
    assert np.any((held > marks["killed"]) & (held < marks["up"] + 1.0))
    # Fresh chunks again after the restart, and the loop stopped holding.
    done_times = np.array([t for t, _ in runner.worker.latencies])
    assert np.any(done_times > marks["up"])
    assert runner.watchdog.last_fresh_s > marks["up"]
    assert client.reconnects >= 1
    assert runner.buffer.stale_executed == 0
    assert st.held < len(st.tick_target_s)


def test_client_timeout_raises_then_recovers():
    port = free_port()
    bind = f"tcp://127.0.0.1:{port}"
    server, th = serve_in_thread(GoToGoal(horizon=3), bind=bind)
    client = PolicyClient(bind, timeout_s=1.0)
    obs = {"pos": np.zeros((1, 2, 2), np.float32)}
    try:
        client(obs)
        server.stop()
        th.join(5)
        with pytest.raises(ServerTimeout):
            client(obs)
        server, th = serve_in_thread(GoToGoal(horizon=3), bind=bind)
        assert client(obs).shape == (3, 2)
    finally:
        server.stop()
        th.join(5)
        client.close()
