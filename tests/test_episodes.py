"""The shared episode protocol: one seed scheme, one end rule and one record shape for collect,
evaluation, semantics data, transfer evaluation and the runner."""

import dataclasses
import os

import gymnasium as gym
import numpy as np
import pytest

from robopolicy.errors import ConfigError, TaskError
from robopolicy.evaluation.episodes import (END_REASONS, SEED_BLOCK, EpisodeHooks, EpisodeRecord, end_codes, episode_seed,
                                            episode_seeds, run_episode)

from _eval_toys import GreedyPolicy, PointTask

os.environ.setdefault("MUJOCO_GL", "egl")

SEED, N = 2, 2
EXPECTED_SEEDS = [2 * SEED_BLOCK, 2 * SEED_BLOCK + 1]
RECORD_KEYS = [f.name for f in dataclasses.fields(EpisodeRecord)]


class CountingEnv(gym.Env):
    """Observation = the step count; success from step ``success_at`` on; truncates at ``limit``."""

    def __init__(self, success_at=3, limit=10, info_has_success=True):
        self.success_at, self.limit, self.info_has_success = success_at, limit, info_has_success
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.seeds = []

    def _info(self):
        return {"success": self.t >= self.success_at, "mode": "up" if self.t >= 2 else None} if self.info_has_success else {}

    def reset(self, *, seed=None, options=None):
        self.t = 0
        self.seeds.append(seed)
        return {"t": np.array([0.0])}, self._info()

    def step(self, action):
        self.t += 1
        return {"t": np.array([float(self.t)])}, 1.0, False, self.t >= self.limit, self._info()


class CountActor:
    def reset(self, seed):
        self.seed = seed

    def act(self, obs, env, t):
        return np.array([float(t)], np.float32)


class Log(EpisodeHooks):
    def __init__(self):
        self.calls = []

    def on_reset(self, env, obs, info):
        self.calls.append(("reset", float(obs["t"][0])))

    def before_step(self, env, t, obs, action):
        self.calls.append(("before", t, float(obs["t"][0]), float(action[0])))

    def after_step(self, env, t, obs, reward, info):
        self.calls.append(("after", t, float(obs["t"][0])))


# -- seeds --------------------------------------------------------------------------------------
def test_episode_seeds_are_seed_blocks():
    assert episode_seeds(SEED, N) == EXPECTED_SEEDS


def test_episode_seed_refuses_an_episode_past_its_block():
    with pytest.raises(ConfigError, match="past the 10000 episodes of one seed block"):
        episode_seed(0, SEED_BLOCK)


def test_episode_seed_refuses_a_negative_seed():
    with pytest.raises(ConfigError, match="seed=-1 must be between 0 and"):
        episode_seed(-1, 0)


# -- end rule -----------------------------------------------------------------------------------
def end_reasons(*args):
    return [END_REASONS[c] for c in np.atleast_1d(end_codes(*args))]


def test_end_rule_success_takes_precedence_over_truncation():
    assert end_reasons(5, 1, False, True, 0, None) == ["success"]


def test_end_rule_waits_stop_after_success_steps():
    assert end_reasons([4, 5], [2, 3], [False, False], [False, False], 2, None) == ["", "success"]


def test_end_rule_without_success_stop_runs_to_the_limit():
    assert end_reasons([9, 10], [5, 6], [False, False], [False, False], None, 10) == ["", "max_steps"]


def test_end_rule_truncation_takes_precedence_over_the_step_limit():
    assert end_reasons(10, 0, False, True, 0, 10) == ["truncated"]


def test_end_rule_reports_termination():
    assert end_reasons(3, 0, True, False, 0, 10) == ["terminated"]


# -- the loop -----------------------------------------------------------------------------------
def test_run_episode_record_after_stop_after_success():
    env = CountingEnv(success_at=3)
    record = run_episode(env, CountActor(), seed=7, stop_after_success=2)
    assert record == EpisodeRecord(seed=7, success=True, steps=5, reward=5.0, done_reason="success", mode="up")


def test_run_episode_truncates_when_success_does_not_end_it():
    record = run_episode(CountingEnv(success_at=3, limit=6), CountActor(), seed=7, stop_after_success=None)
    assert (record.steps, record.done_reason) == (6, "truncated")


def test_run_episode_resets_the_env_with_the_episode_seed():
    env = CountingEnv()
    run_episode(env, CountActor(), seed=20001)
    assert env.seeds == [20001]


def test_hooks_see_the_observation_before_its_action_and_the_one_after():
    log = Log()
    run_episode(CountingEnv(success_at=2), CountActor(), seed=0, stop_after_success=0, hooks=[log])
    assert log.calls == [("reset", 0.0), ("before", 0, 0.0, 0.0), ("after", 0, 1.0), ("before", 1, 1.0, 1.0), ("after", 1, 2.0)]


def test_run_episode_needs_the_success_flag():
    with pytest.raises(TaskError, match=r"does not report info\['success'\]"):
        run_episode(CountingEnv(info_has_success=False), CountActor(), seed=0)


# -- every caller: the same seeds and the same record shape --------------------------------------
@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    from robopolicy.collect import collect
    from robopolicy.defaults import group_config
    from robopolicy.envs import make_task

    return collect(make_task(group_config("task", "multimodal")), episodes=N, seed=SEED, out=tmp_path_factory.mktemp("c") / "s.zarr", progress=False)["records"]


@pytest.fixture(scope="module")
def evaluated():
    from robopolicy.evaluation import evaluate_policy

    task = PointTask(max_steps=12)
    return evaluate_policy(GreedyPolicy(task.spec, noise=0.01), task, episodes=N, seed=SEED, num_envs=2, progress=False)["records"]


def _real_camera_16px() -> dict:
    """The semantics experiments' real camera without a dynamics gap (conf/semantics/real_env/same_dynamics.yaml), 16 px."""
    from robopolicy.defaults import constructor_kwargs, group_config

    return constructor_kwargs(group_config("semantics/real_env", "same_dynamics", {"image_size": 16}))


@pytest.fixture(scope="module")
def semantics_data():
    from robopolicy.defaults import group_config
    from robopolicy.envs import make_task
    from robopolicy.semantics.data import collect_real_episodes

    data, _ = collect_real_episodes(make_task(group_config("task", "planar_push", {"max_episode_steps": 12})), _real_camera_16px(), episodes=N, seed=SEED,
                                    behaviour_noise=0.3, reach_steps=0)
    return [r.to_dict() for r in data.records]


@pytest.fixture(scope="module")
def transfer():
    from robopolicy.defaults import group_config
    from robopolicy.envs import make_task
    from robopolicy.semantics.transfer import ExpertController, evaluate_transfer

    task = make_task(group_config("task", "planar_push", {"max_episode_steps": 12}))
    return evaluate_transfer(None, ExpertController(task), task, _real_camera_16px(), episodes=N, seed=SEED)["records"]


@pytest.fixture(scope="module")
def runner_episodes():
    from robopolicy.runtime.fakes import GoToGoal, PointEnv, point_spec
    from robopolicy.runtime.runner import Runner, RunnerConfig
    from robopolicy.runtime.sim_robot import SimRobot

    spec = point_spec(50.0)
    robot = SimRobot.from_defaults(lambda: PointEnv(spec), spec)
    robot.connect()
    try:
        eps = Runner(robot, GoToGoal(horizon=8), RunnerConfig.from_defaults(rate_hz=50.0, duration_s=0, episodes=N, seed=SEED)).run().episodes
        return [{k: v for k, v in e.items() if k != "ticks"} for e in eps]  # the record + its tick range (runner only)
    finally:
        robot.disconnect()


CALLERS = ["collected", "evaluated", "semantics_data", "transfer", "runner_episodes"]


@pytest.mark.parametrize("caller", CALLERS)
def test_every_caller_uses_the_seed_blocks(caller, request):
    assert [r["seed"] for r in request.getfixturevalue(caller)] == EXPECTED_SEEDS


@pytest.mark.parametrize("caller", CALLERS)
def test_every_caller_reports_the_same_record_shape(caller, request):
    assert [list(r) for r in request.getfixturevalue(caller)] == [RECORD_KEYS] * N


def test_evaluation_records_agree_with_its_lists():
    from robopolicy.evaluation import evaluate_policy

    task = PointTask(max_steps=12)
    r = evaluate_policy(GreedyPolicy(task.spec, noise=0.01), task, episodes=N, seed=SEED, num_envs=1, progress=False)
    assert [(e["success"], e["steps"]) for e in r["records"]] == list(zip(r["successes"], r["episode_lengths"]))


def test_vectorised_and_single_env_evaluations_give_the_same_records():
    from robopolicy.evaluation import evaluate_policy

    task = PointTask(max_steps=12)
    r = evaluate_policy(GreedyPolicy(task.spec, noise=0.0), task, episodes=N, seed=SEED, num_envs=1, progress=False)
    v = evaluate_policy(GreedyPolicy(task.spec, noise=0.0), task, episodes=N, seed=SEED, num_envs=2, progress=False)
    assert r["records"] == v["records"]


def _point_runner(**cfg):
    from robopolicy.runtime.fakes import GoToGoal, PointEnv, point_spec
    from robopolicy.runtime.runner import Runner, RunnerConfig
    from robopolicy.runtime.sim_robot import SimRobot

    spec = point_spec(50.0)
    robot = SimRobot.from_defaults(lambda: PointEnv(spec), spec)
    robot.connect()
    return Runner(robot, GoToGoal(horizon=8), RunnerConfig.from_defaults(rate_hz=50.0, **cfg)), robot


def test_runner_refuses_a_seed_past_the_blocks_before_running():
    runner, robot = _point_runner(duration_s=0, episodes=1, seed=10**6)
    try:
        with pytest.raises(ConfigError, match="seed=1000000 must be between 0 and"):
            runner.run()
        assert runner.stats.episodes == []
    finally:
        robot.disconnect()


def test_unlimited_runner_stops_at_the_end_of_its_seed_block(monkeypatch):
    import robopolicy.runtime.runner as runner_mod

    monkeypatch.setattr(runner_mod, "SEED_BLOCK", 2)  # a block of two episodes instead of 10,000
    runner, robot = _point_runner(duration_s=600, episodes=0, seed=0)
    try:
        stats = runner.run()
    finally:
        robot.disconnect()
    assert (len(stats.episodes), stats.stop_reason.split(" (")[0]) == (2, "2 episodes")
