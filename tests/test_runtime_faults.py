"""Fault behaviour of the runner on a simulated point robot with scripted fake policies.

Timing assertions leave generous slack (a loaded 2-core CI machine): they check the logic
("held from the first tick after the deadline", "stopped within one period plus slack"), not
jitter figures, which live in tools/bench_runner.py.
"""

import logging
import os
import signal
import threading
import time

import numpy as np
import pytest

from robopolicy.runtime.clock import now
from robopolicy.runtime.fakes import ConstantPredictor, GoToGoal, PointEnv, point_spec
from robopolicy.runtime.runner import Runner, RunnerConfig
from robopolicy.runtime.sim_robot import SimRobot
from robopolicy.runtime.watchdog import EStop

RATE = 50.0
PERIOD = 1.0 / RATE
SLACK = 0.3  # scheduling slack on a loaded machine, on top of the one period the logic allows


class LoggingRobot(SimRobot):
    """SimRobot that remembers when each action was sent."""

    def __init__(self, spec):
        super().__init__(lambda: PointEnv(spec), spec, **SimRobot.settings())
        self.sent: list[tuple[float, np.ndarray]] = []

    def send_action(self, action):
        out = super().send_action(action)
        self.sent.append((now(), out))
        return out


def make(predictor, estop=None, **cfg):
    spec = point_spec(RATE, max_episode_steps=100000)
    robot = LoggingRobot(spec)
    robot.connect()
    base = dict(rate_hz=RATE, duration_s=10.0, hold_after_s=0.4, stop_after_s=1.2, first_chunk_timeout_s=20.0)
    base.update(cfg)
    return Runner(robot, predictor, RunnerConfig.from_defaults(**{"seed": 0, **base}), estop=estop), robot


def _check_hold_then_stop(runner, robot):
    # Judged on the times the watchdog checked each tick, not the ticks' due times: on a loaded
    # machine a tick can run late, and its due time then lies before the deadline it was held for.
    st, wd = runner.stats, runner.watchdog
    assert st.stop_reason == "watchdog"
    last_fresh = wd.last_fresh_s
    hold_due, stop_due = last_fresh + wd.hold_after_s, last_fresh + wd.stop_after_s
    held = set(st.held_at_s)
    checked = [(c, t in held) for t, c in zip(st.tick_target_s, st.tick_checked_s) if c > last_fresh]
    held_checks = [c for c, h in checked if h]
    assert held_checks, "the watchdog never held"
    # Held from the first tick after the first deadline (within one period, plus slack) ...
    assert hold_due <= held_checks[0] <= hold_due + PERIOD + SLACK
    # ... never before it, and on every tick after it; the run stopped at the second deadline.
    assert not [c for c, h in checked if h and c < hold_due]
    assert all(h for c, h in checked if c >= hold_due)
    assert stop_due <= wd.stopped_at_s <= stop_due + PERIOD + SLACK
    assert wd.trips >= 1 and wd.stops == 1
    # The last command leaves the robot still (this robot holds with zeros).
    assert np.all(robot.sent[-1][1] == 0)
    assert runner.buffer.stale_executed == 0


def test_hanging_policy_holds_then_stops():
    pred = GoToGoal(horizon=100, hang_after=3)  # long chunks: the plan never runs out before the deadline
    runner, robot = make(pred)
    try:
        runner.run()
        _check_hold_then_stop(runner, robot)
        assert runner.stats.starved == 0
    finally:
        pred.release.set()


def test_raising_policy_holds_then_stops_and_logs(caplog):
    pred = GoToGoal(horizon=100, raise_after=3)
    runner, robot = make(pred)
    with caplog.at_level(logging.ERROR, logger="robopolicy.runtime.worker"):
        runner.run()
    _check_hold_then_stop(runner, robot)
    assert runner.stats.inference_errors >= 1
    assert "policy exploded" in (runner.stats.last_inference_error or "")
    assert any("inference failed" in r.getMessage() for r in caplog.records)


def test_nan_actions_are_held_and_counted():
    pred = GoToGoal(horizon=4, nan_after=2)
    runner, robot = make(pred, duration_s=1.0)
    runner.run()
    counts = runner.safety.counts
    assert counts["nonfinite"] >= 5
    sent = np.stack([a for _, a in robot.sent])
    assert np.all(np.isfinite(sent))
    assert np.any(np.all(sent == 0, axis=1))  # the hold action (zeros for this robot) replaced them
    assert np.all(np.isfinite(np.stack(robot.env.actions)))


@pytest.mark.parametrize("source", ["file", "signal"])
def test_estop_stops_within_one_period(tmp_path, source):
    path = tmp_path / "STOP"
    estop = EStop(signal_name="SIGUSR1", file_path=str(path))
    runner, robot = make(GoToGoal(horizon=16), estop=estop, duration_s=10.0)
    fired = {}

    def fire():
        time.sleep(0.5)
        fired["t"] = now()
        if source == "file":
            path.touch()
        else:
            os.kill(os.getpid(), signal.SIGUSR1)

    th = threading.Thread(target=fire)
    th.start()
    try:
        runner.run()
    finally:
        th.join()
        estop.close()
    assert runner.stats.stop_reason.startswith("e-stop")
    # The last policy action went out before the trigger or within one period after it; then the
    # final hold command.
    policy_sends = robot.sent[:-1]
    assert policy_sends[-1][0] <= fired["t"] + PERIOD + SLACK
    assert robot.sent[-1][0] - fired["t"] <= PERIOD + SLACK


def test_rtc_passes_committed_actions_to_the_policy():
    pred = ConstantPredictor(horizon=20)  # supports_prefix = True
    runner, robot = make(pred, duration_s=0.6, rtc=True)
    runner.run()
    prefixes = [p for p in pred.seen_prefix if p is not None]
    assert prefixes, "real-time chunking never passed the committed actions"
    # Committed actions come from earlier chunks: action i of chunk c is [c, i] / 100.
    for p in prefixes:
        assert p.shape[1] == 2 and np.all(p[:, 0] * 100 < pred.calls + 0.5)
    assert runner.buffer.stale_executed == 0


def test_rtc_fallback_freezes_committed_actions():
    from robopolicy.runtime.worker import InferenceWorker

    pred = GoToGoal(horizon=6)  # supports_prefix = False
    worker = InferenceWorker(pred, dt_s=PERIOD)
    try:
        worker.observe({"pos": np.zeros(2, np.float32)}, now())
        prefix = np.array([[0.1, -0.1], [0.2, -0.2]], np.float32)
        worker.request(prefix)
        assert worker.wait_for_chunk(10.0)
        chunk = worker.collect()[0]
        assert np.array_equal(chunk.actions[:2], prefix)  # frozen, not replaced by the new plan
        assert np.allclose(chunk.actions[2:], chunk.actions[2])  # the rest is the policy's
    finally:
        worker.close()


def test_runner_counts_episodes_and_successes():
    runner, _ = make(GoToGoal(horizon=8), duration_s=0.0, episodes=3)
    runner.run()
    eps = runner.stats.episodes
    assert len(eps) == 3 and all(e["success"] for e in eps)
    assert [e["seed"] for e in eps] == [0, 1, 2]
    assert runner.stats.stop_reason == "episodes"


def test_failed_first_request_is_asked_again():
    """A policy (or server) whose first call fails - e.g. a slow warm-up hitting the client timeout -
    still starts the episode: the runner asks again while it waits for the first chunk."""

    class FailsFirst(GoToGoal):
        calls = 0

        def __call__(self, obs, prefix=None):
            FailsFirst.calls += 1
            if FailsFirst.calls == 1:
                raise TimeoutError("first call too slow")
            return super().__call__(obs, prefix)

    spec = point_spec(RATE, max_episode_steps=100000)
    robot = SimRobot.from_defaults(lambda: PointEnv(spec), spec, stop_on_success=False)
    robot.connect()
    runner = Runner(robot, FailsFirst(horizon=8), RunnerConfig.from_defaults(seed=0, rate_hz=RATE, duration_s=0.5, first_chunk_timeout_s=10.0))
    runner.run()
    assert runner.stats.stop_reason == "duration"
    assert runner.worker.errors == 1 and FailsFirst.calls >= 2
