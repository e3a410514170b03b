"""Episode seeds through the serving path: a client names its episode, the server draws that
episode's policy noise from a stream seeded as robopolicy-eval seeds the episode, so a stochastic
policy served over ZeroMQ or openpi's protocol reproduces in-process evaluation episode by episode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _eval_toys import GreedyPolicy, PointTask
from _server_toys import PHASE, eval_match, slow_sim_robot

from robopolicy.cli.deploy import episode_timing
from robopolicy.evaluation import evaluate_policy
from robopolicy.runtime.client import PolicyClient, ServerError
from robopolicy.runtime.openpi_server import serve_openpi_in_thread
from robopolicy.runtime.openpi_wire import OpenPIPredictor
from robopolicy.runtime.runner import Runner, RunnerConfig
from robopolicy.runtime.served import ServedPolicy
from robopolicy.runtime.sim_robot import SimRobot
from robopolicy.runtime.worker import InferenceWorker, LocalPredictor

TASK = PointTask(max_steps=12)
SPEC = TASK.spec
OBS = {"state": np.tile(np.array([0.0, 0.0, 0.5, -0.5], np.float32), (1, 2, 1))}  # (1, To=2, 4)


def noisy() -> GreedyPolicy:
    return GreedyPolicy(SPEC, gain=0.5, noise=0.02)


def seeded_reference(seed: int, calls: int) -> list[np.ndarray]:
    """What evaluation draws in an episode reset with ``seed``: manual_seed, then the samples in order."""
    pol = noisy()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return [pol.sample(OBS, n=1)[0, 0].numpy() for _ in range(calls)]


def test_served_policy_episode_draws_match_a_seeded_evaluation_episode():
    served = ServedPolicy(noisy())
    served.new_episode(30007)
    got = [served(OBS) for _ in range(3)]
    np.testing.assert_array_equal(np.stack(got), np.stack(seeded_reference(30007, 3)))


def test_two_clients_streams_do_not_mix():
    served = ServedPolicy(noisy())
    served.new_episode(5, stream="a")
    served.new_episode(6, stream="b")
    a = [served(OBS, stream="a"), None, served(OBS, stream="a")]
    a[1] = served(OBS, stream="b")  # b's draw between a's two
    np.testing.assert_array_equal(np.stack([a[0], a[2]]), np.stack(seeded_reference(5, 2)))


def test_stream_leaves_the_process_rng_untouched():
    served = ServedPolicy(noisy())
    served.new_episode(5)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    served(OBS)
    assert torch.equal(torch.get_rng_state(), before)


def test_zmq_client_episode_seed_reproduces_the_seeded_episode(serve):
    srv = serve(noisy())
    client = PolicyClient(srv.endpoint, timeout_s=5.0)
    client.new_episode(40001)
    got = np.stack([client(OBS) for _ in range(3)])
    client.close()
    np.testing.assert_array_equal(got, np.stack(seeded_reference(40001, 3)))


def test_zmq_new_episode_with_the_same_seed_starts_the_stream_again(serve):
    srv = serve(noisy())
    client = PolicyClient(srv.endpoint, timeout_s=5.0)
    client.new_episode(7)
    first = client(OBS)
    client(OBS)
    client.new_episode(7)
    again = client(OBS)
    client.close()
    np.testing.assert_array_equal(again, first)


def test_zmq_bad_episode_seed_is_a_request_error(serve):
    srv = serve(noisy())
    client = PolicyClient(srv.endpoint, timeout_s=5.0)
    client.episode = {"seed": -1, "start": True}
    with pytest.raises(ServerError, match="episode seed") as e:
        client(OBS)
    client.close()
    assert e.value.code == "request"


def test_openpi_episode_seed_reproduces_the_seeded_episode():
    srv, th = serve_openpi_in_thread(noisy())
    try:
        pred = OpenPIPredictor(srv.endpoint, timeout_s=5.0)
        pred.new_episode(40002)
        got = np.stack([pred(OBS) for _ in range(3)])
        pred.close()
    finally:
        srv.stop()
        th.join(5)
    np.testing.assert_array_equal(got, np.stack(seeded_reference(40002, 3)))


def test_local_predictor_episode_seed_reproduces_the_seeded_episode():
    pred = LocalPredictor(noisy(), torch_threads=None)
    pred.new_episode(11)
    got = np.stack([pred(OBS) for _ in range(2)])
    np.testing.assert_array_equal(got, np.stack(seeded_reference(11, 2)))


class _Recorder:
    """A predictor that logs the order of new_episode and calls (worker thread)."""

    obs_horizon, obs_keys, supports_prefix = 2, ["state"], False

    def __init__(self):
        self.log = []

    def new_episode(self, seed):
        self.log.append(("episode", seed))

    def __call__(self, obs, prefix=None):
        self.log.append(("call",))
        return np.zeros((7, 2), np.float32)


def test_worker_tells_the_predictor_the_episode_seed_before_its_first_request():
    pred = _Recorder()
    worker = InferenceWorker(pred, dt_s=0.1)
    try:
        for seed in (3, 4):
            worker.new_episode(seed)
            worker.observe({"state": np.zeros(4, np.float32)}, 0.0)
            worker.request()
            assert worker.wait_for_chunk(10.0)
            worker.collect()
    finally:
        worker.close()
    assert pred.log == [("episode", 3), ("call",), ("episode", 4), ("call",)]


class _CountingPredictor:
    obs_horizon, obs_keys, supports_prefix = 2, ["state"], False

    def __init__(self):
        self.calls = 0

    def __call__(self, obs, prefix=None):
        self.calls += 1
        return np.zeros((7, 2), np.float32)


def test_first_chunk_finishing_just_after_the_wait_is_not_requested_again():
    """The runner's first-chunk wait times out just before the chunk lands: no second request
    (it would sample twice for one observation and replace the first chunk mid-episode)."""
    pred = _CountingPredictor()
    robot = slow_sim_robot(PointTask(max_steps=2))
    robot.connect()
    runner = Runner(robot, pred, RunnerConfig.from_defaults(**eval_match(1, 0)))
    real_wait, first = runner.worker.wait_for_chunk, [True]

    def racy_wait(timeout_s):
        if first[0] and timeout_s > 0:
            first[0] = False
            real_wait(30.0)  # the chunk is done ...
            return False  # ... just after the wait gave up
        return real_wait(timeout_s)

    runner.worker.wait_for_chunk = racy_wait
    try:
        runner.run()
    finally:
        robot.disconnect()
    assert pred.calls == 1  # a 2-step episode re-plans every 4 ticks: only the first chunk


SLOWER_HZ = 2.5  # 400 ms per step: a chunk may be 340 ms late before an outcome could change


def _runner_episodes(predictor, episodes: int, seed: int) -> tuple[list[tuple[bool, int, float]], list[bool]]:
    """Each episode's (success, steps, return) through the runner, and whether it ran on time (no
    chunk after its tick's deadline, no late send: robopolicy-deploy's episode_timing)."""
    robot = SimRobot.from_defaults(lambda: TASK.make_env(), SPEC, control_hz=SLOWER_HZ, phase=PHASE)
    robot.connect()
    runner = Runner(robot, predictor, RunnerConfig.from_defaults(**eval_match(episodes, seed, rate_hz=SLOWER_HZ)))
    try:
        runner.run()
    finally:
        robot.disconnect()
    assert runner.stats.stop_reason == "episodes"
    on_time = [e["late_chunks"] == 0 and e["late_sends"] == 0 for e in episode_timing(runner)]
    return [(e["success"], e["steps"], round(e["reward"], 9)) for e in runner.stats.episodes], on_time


@pytest.mark.slow
def test_stochastic_policy_through_the_server_matches_evaluation_episode_by_episode(serve):
    ref = evaluate_policy(noisy(), TASK, 3, seed=4, progress=False)
    srv = serve(noisy())
    client = PolicyClient(srv.endpoint, timeout_s=5.0)
    try:
        got, on_time = _runner_episodes(client, 3, seed=4)
    finally:
        client.close()
    want = list(zip(ref["successes"], ref["episode_lengths"], [round(r, 9) for r in ref["returns"]]))
    # An episode in which a chunk came after its tick's deadline (a stall of the loaded CI machine)
    # played an older chunk for a tick, as a real robot would: only episodes that ran on time are
    # the synchronous evaluation. Their returns depend on every noise draw: equal returns, same draws.
    compared = [i for i, ok in enumerate(on_time) if ok]
    assert compared, "no episode ran on time; the machine was too loaded to compare"
    assert [got[i] for i in compared] == [want[i] for i in compared]


def test_runner_records_each_episodes_tick_range():
    robot = slow_sim_robot(PointTask(max_steps=2))
    robot.connect()
    runner = Runner(robot, _CountingPredictor(), RunnerConfig.from_defaults(**eval_match(2, 0)))
    try:
        runner.run()
    finally:
        robot.disconnect()
    ranges = [e["ticks"] for e in runner.stats.episodes]
    assert ranges == [[0, ranges[0][1]], [ranges[0][1], len(runner.stats.tick_target_s)]]
