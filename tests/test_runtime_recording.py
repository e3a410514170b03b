"""Episode recording: episodes land in the episode store, and a kill mid-run keeps every
finished episode."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
from _server_toys import PHASE, SLOW_HZ

from robopolicy.data.store import EpisodeStore
from robopolicy.runtime.fakes import GoToGoal, PointEnv, point_spec
from robopolicy.runtime.recorder import EpisodeRecorder
from robopolicy.runtime.runner import Runner, RunnerConfig
from robopolicy.runtime.sim_robot import SimRobot

CHILD = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from robopolicy.runtime.fakes import GoToGoal, PointEnv, point_spec
    from robopolicy.runtime.recorder import EpisodeRecorder
    from robopolicy.runtime.runner import Runner, RunnerConfig
    from robopolicy.runtime.sim_robot import SimRobot
    spec = point_spec(50.0)
    robot = SimRobot.from_defaults(lambda: PointEnv(spec), spec)
    robot.connect()
    rec = EpisodeRecorder(sys.argv[1], spec)
    Runner(robot, GoToGoal(horizon=8), RunnerConfig.from_defaults(seed=0, rate_hz=50.0, duration_s=0, episodes=1000), recorder=rec).run()
    """
)


def _runner(path, episodes):
    # Slow motion (5 Hz, steps 0.9 period after a tick): each action reaches the simulator before its step even on a
    # loaded CI machine. At 50 Hz a late tick let the simulator step once more with the previous action (as a real
    # robot would), which breaks the one-step pairing checked below.
    spec = point_spec(SLOW_HZ)
    robot = SimRobot.from_defaults(lambda: PointEnv(spec), spec, phase=PHASE)
    robot.connect()
    rec = EpisodeRecorder(path, spec)
    return Runner(robot, GoToGoal(horizon=8), RunnerConfig.from_defaults(seed=0, rate_hz=SLOW_HZ, duration_s=0, episodes=episodes),
                  recorder=rec)


def test_recorded_episodes_match_the_run(tmp_path):
    path = tmp_path / "deploy.zarr"
    runner = _runner(path, 2)
    runner.run()
    store = EpisodeStore.open(path)
    assert store.n_episodes == 2
    for i, ep in enumerate(store.iter_episodes()):
        n = len(ep["action"])
        assert ep["pos"].shape == (n, 2) and ep["reward"].shape == (n,)
        assert ep["success"][-1] and ep["done"][-1] and not ep["done"][:-1].any()
        assert runner.stats.episodes[i]["success"]
        # obs[t] is the state before action[t]: between two recorded observations the simulator
        # took k >= 0 steps of 0.05 * action[t] (k = 1 when every tick is on time), the same k on both axes.
        delta = ep["pos"][1:] - ep["pos"][:-1]
        step = 0.05 * ep["action"][:-1]
        moving = np.all(np.abs(step) > 1e-3, axis=1)
        k = delta[moving] / step[moving]
        assert moving.sum() > 5
        np.testing.assert_allclose(k, np.round(k), atol=2e-2)
        np.testing.assert_allclose(k[:, 0], k[:, 1], atol=2e-2)
        assert (np.round(k) >= 0).all()


def test_kill_during_recording_keeps_finished_episodes(tmp_path):
    path = tmp_path / "deploy.zarr"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stderr=subprocess.PIPE, text=True, env=env)
    recorded = 0
    deadline = time.monotonic() + 120
    try:
        for line in child.stderr:
            if "episode recorded" in line:
                recorded += 1
                if recorded >= 3:
                    break
            assert time.monotonic() < deadline, "the child never recorded 3 episodes"
        time.sleep(0.2)  # into the next episode (or its write)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    assert recorded >= 3
    store = EpisodeStore.open(path, mode="a")  # also discards any half-written append
    assert store.n_episodes >= recorded
    for ep in store.iter_episodes():
        n = len(ep["action"])
        assert n > 0 and all(len(v) == n for v in ep.values())
        assert np.all(np.isfinite(ep["pos"])) and ep["done"][-1]
    # The store stays usable: the runner can append to it again.
    before = store.n_episodes
    del store
    _runner(path, 1).run()
    assert EpisodeStore.open(path).n_episodes == before + 1
