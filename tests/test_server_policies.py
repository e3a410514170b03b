"""Every policy kind over the wire: goal-conditioned (goal sent with the observation), V-GPS-steered
(the critic runs in the server), requests checked against the policy's spec; and the runner
through the server gives the same per-episode successes as in-process evaluation on the same seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _eval_toys import PointTask
from _server_toys import (
    CandidatePolicy,
    GoalBiasPolicy,
    make_vgps_toy,
    run_eval_match,
)

from robopolicy.errors import ConfigError
from robopolicy.evaluation import evaluate_policy
from robopolicy.runtime.client import PolicyClient, ServerError, read_goal

TASK = PointTask(max_steps=12)
SPEC = TASK.spec
STATE = np.array([0.0, 0.0, 0.5, -0.5], np.float32)
OBS = {"state": np.tile(STATE, (1, 2, 1))}  # (1, To=2, 4)
FAR = {"state": np.array([0.1, 0.1, 0.0, 0.0], np.float32)}


def test_goal_travels_with_the_observation(serve):
    srv = serve(GoalBiasPolicy(SPEC))
    client = PolicyClient(srv.endpoint, timeout_s=5.0, goal=FAR)
    assert client.goal_keys == ["state"]
    np.testing.assert_allclose(client(OBS)[0], [0.1, 0.0])  # greedy (0.1, -0.1) after clipping, shifted by (0.1, 0.1), clipped
    client.set_goal(None)
    np.testing.assert_allclose(client(OBS)[0], [0.1, -0.1])
    client.close()


def test_goal_with_a_wrong_shape_is_an_error_reply(serve):
    srv = serve(GoalBiasPolicy(SPEC))
    client = PolicyClient(srv.endpoint, timeout_s=5.0, goal={"state": np.zeros(3, np.float32)})
    with pytest.raises(ServerError, match="goal 'state' has shape"):
        client(OBS)
    client.close()


def test_goal_for_a_goal_free_policy_is_refused_by_the_client(serve):
    srv = serve(CandidatePolicy(SPEC))
    with pytest.raises(ConfigError, match="not goal-conditioned"):
        PolicyClient(srv.endpoint, timeout_s=5.0, goal=FAR)


def test_observation_with_a_wrong_shape_is_an_error_reply(serve):
    srv = serve(GoalBiasPolicy(SPEC))
    client = PolicyClient(srv.endpoint, timeout_s=5.0)
    with pytest.raises(ServerError, match=r"observation 'state' has shape \[1, 2, 3\]"):
        client({"state": np.zeros((1, 2, 3), np.float32)})
    client.close()


def test_nan_observation_is_an_error_reply(serve):
    srv = serve(GoalBiasPolicy(SPEC))
    client = PolicyClient(srv.endpoint, timeout_s=5.0)
    with pytest.raises(ServerError, match="NaN"):
        client({"state": np.full((1, 2, 4), np.nan, np.float32)})
    client.close()


def test_vgps_steered_policy_is_served_with_its_critic(serve):
    srv = serve(make_vgps_toy(SPEC, k=8))
    client = PolicyClient(srv.endpoint, timeout_s=5.0)
    assert client.info["steered"] is True
    got = client(OBS)[0]
    unsteered = CandidatePolicy(SPEC).sample(OBS, n=1)[0, 0, 0].numpy()
    np.testing.assert_allclose(got, [0.1, -0.1])  # the critic's pick: the offset-free sample
    assert not np.allclose(got, unsteered)
    client.close()


def test_read_goal_from_npz(tmp_path):
    np.savez(tmp_path / "g.npz", state=np.arange(4, dtype=np.float64))
    g = read_goal(str(tmp_path / "g.npz"))
    assert g["state"].dtype == np.float32
    np.testing.assert_array_equal(g["state"], [0, 1, 2, 3])


def test_read_goal_bad_file_is_one_sentence(tmp_path):
    with pytest.raises(ConfigError, match="not a readable .npz"):
        read_goal(str(tmp_path / "missing.npz"))


def runner_successes(endpoint: str, episodes: int, seed: int, goal=None) -> list[bool]:
    """The runner on the simulated PointTask through the server, with the eval-matching settings."""
    stats = run_eval_match(PolicyClient(endpoint, timeout_s=5.0, goal=goal), TASK, episodes, seed)
    assert stats.stop_reason == "episodes"
    return [e["success"] for e in stats.episodes]


@pytest.mark.slow
def test_goal_conditioned_policy_through_the_server_matches_in_process_evaluation(serve):
    goal = {"state": np.array([0.0, 0.02, 0.0, 0.0], np.float32)}
    torch.manual_seed(0)
    ref = evaluate_policy(GoalBiasPolicy(SPEC), TASK, 6, seed=4, goal=goal, progress=False)["successes"]
    srv = serve(GoalBiasPolicy(SPEC))
    assert runner_successes(srv.endpoint, 6, seed=4, goal=goal) == ref
    assert 0 < sum(ref) < 6  # the comparison has both outcomes to get right


@pytest.mark.slow
def test_vgps_policy_through_the_server_matches_in_process_evaluation(serve):
    ref = evaluate_policy(make_vgps_toy(SPEC), TASK, 6, seed=4, progress=False)["successes"]
    srv = serve(make_vgps_toy(SPEC))
    assert runner_successes(srv.endpoint, 6, seed=4) == ref
    assert 0 < sum(ref) < 6


def test_one_sample_at_a_time_per_model(serve):
    """Two clients at once never run the model's sample concurrently (schedulers keep state)."""
    import threading
    import time

    class Probe(GoalBiasPolicy):
        def __init__(self, spec):
            super().__init__(spec)
            self.inside, self.overlaps = 0, 0

        def sample(self, obs, n=1, goal=None):
            self.inside += 1
            self.overlaps += self.inside > 1
            time.sleep(0.05)
            self.inside -= 1
            return super().sample(obs, n, goal)

    probe = Probe(SPEC)
    srv = serve(probe, workers=2)
    clients = [PolicyClient(srv.endpoint, timeout_s=10.0) for _ in range(2)]
    threads = [threading.Thread(target=lambda c=c: [c(OBS) for _ in range(4)]) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in clients:
        c.close()
    assert probe.overlaps == 0
