"""robopolicy.collect and the robopolicy-collect command, on tiny sizes."""

import os
import subprocess
import sys

import numpy as np
import pytest
import zarr

from robopolicy.collect import collect
from robopolicy.data.store import EpisodeStore
from robopolicy.defaults import group_config
from robopolicy.envs import make_task
from robopolicy.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def mm_task():
    return make_task(group_config("task", "multimodal"))


def side_passed(states, obstacle):
    """'left'/'right' from the stored xy trajectory (independent of the env's own bookkeeping)."""
    cx, cy, hx, hy = obstacle
    beside = (np.abs(states[:, 1] - cy) <= hy) & (np.abs(states[:, 0] - cx) >= hx)
    if not beside.any():
        return None
    return "left" if states[beside, 0].mean() < cx else "right"


def test_collect_demos_hold_both_modes(tmp_path, mm_task):
    summary = collect(mm_task, episodes=20, out=tmp_path / "mm.zarr", seed=0, progress=False)
    store = EpisodeStore.open(tmp_path / "mm.zarr")
    assert store.n_episodes == 20 and summary["episodes"] == 20 and summary["steps"] == store.n_steps
    assert summary["success_rate"] >= 0.95
    sides = [side_passed(ep["state"], mm_task.obstacle) for ep in store.iter_episodes()]
    assert sides.count("left") >= 5 and sides.count("right") >= 5  # each mode >= 25%
    assert summary["modes"] == {"left": sides.count("left"), "right": sides.count("right")}


def test_collect_episode_layout_and_stop_after_success(tmp_path, mm_task):
    collect(mm_task, episodes=3, out=tmp_path / "a.zarr", seed=1, stop_after_success=2, progress=False)
    store = EpisodeStore.open(tmp_path / "a.zarr")
    for ep in store.iter_episodes():
        first = int(np.argmax(ep["success"]))
        assert ep["success"][first] and not ep["success"][:first].any()
        assert len(ep["action"]) == first + 3  # the success step and two more
        assert ep["done"][-1] and not ep["done"][:-1].any()
        # obs[t] is the observation before action[t]: the agent moves along the commanded velocity.
        dxy = np.diff(ep["state"][:, :2], axis=0)
        assert np.mean(np.sum(dxy * ep["action"][:-1], axis=1) > 0) > 0.9
    prov = store.attrs
    assert prov["seed"] == 1 and prov["noise"] == 0.0 and prov["expert"] == "MultimodalExpert"
    assert "mujoco" in prov["versions"] and prov["summary"]["episodes"] == 3
    # Same seed, same data.
    collect(mm_task, episodes=3, out=tmp_path / "b.zarr", seed=1, stop_after_success=2, progress=False)
    np.testing.assert_array_equal(store.get("action"), EpisodeStore.open(tmp_path / "b.zarr").get("action"))


def test_collect_noise_is_clipped_and_failures_are_made(tmp_path, mm_task):
    summary = collect(mm_task, episodes=6, noise=3.0, out=tmp_path / "n.zarr", seed=0, progress=False)
    actions = EpisodeStore.open(tmp_path / "n.zarr").get("action")
    assert actions.min() >= -1 and actions.max() <= 1 and np.mean(np.abs(actions) == 1) > 0.3
    collect(mm_task, episodes=6, fail_fraction=0.5, out=tmp_path / "f.zarr", seed=0, progress=False)
    store = EpisodeStore.open(tmp_path / "f.zarr")
    failing = store.attrs["failing_episodes"]
    assert len(failing) == 3
    success = [bool(store.episode(i)["success"].any()) for i in range(6)]
    assert [i for i in range(6) if not success[i]] == sorted(failing)
    assert summary["episodes"] == 6


def test_collect_refuses_bad_input(tmp_path, mm_task):
    collect(mm_task, episodes=1, out=tmp_path / "x.zarr", progress=False)
    with pytest.raises(DataError, match="overwrite=true"):
        collect(mm_task, episodes=1, out=tmp_path / "x.zarr", progress=False)
    collect(mm_task, episodes=2, out=tmp_path / "x.zarr", progress=False, overwrite=True)
    assert EpisodeStore.open(tmp_path / "x.zarr").n_episodes == 2
    with pytest.raises(ConfigError, match="out="):
        collect(mm_task, episodes=1, out=None)
    with pytest.raises(ConfigError, match="fail_fraction"):
        collect(mm_task, episodes=1, fail_fraction=1.5, out=tmp_path / "y.zarr")
    assert not (tmp_path / "y.zarr").exists()


def run_cli(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl"}
    return subprocess.run([sys.executable, "-m", "robopolicy.cli.collect", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_metaworld_with_images(tmp_path):
    out = tmp_path / "reach.zarr"
    r = run_cli(["task=metaworld", "task.env_name=reach-v3", "task.fresh_positions=true", "episodes=2",
                 "render=true", "task.image.size=24", f"out={out}", "progress=false"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "success rate" in r.stdout
    group = zarr.open_group(str(out), mode="r")
    ends = group["meta/episode_ends"][:]
    assert len(ends) == 2 and group["data/image"].shape == (ends[-1], 24, 24, 3)
    assert group["data/state"].shape == (ends[-1], 39) and group["data/image"].dtype == np.uint8
    assert "task.env_name=reach-v3" in group.attrs["provenance"]["command"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reach.zarr"]  # no outputs/ or logs


def test_cli_multimodal_and_bad_input(tmp_path):
    r = run_cli(["task=multimodal", "episodes=4", "out=mm.zarr", "progress=false"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "modes" in r.stdout and EpisodeStore.open(tmp_path / "mm.zarr").n_episodes == 4
    r = run_cli(["task=multimodal", "episodes=5", "out=mm.zarr", "progress=false", "append=true"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "wrote 1 episodes" in r.stdout and EpisodeStore.open(tmp_path / "mm.zarr").n_episodes == 5
    for args, words in [
        (["task=nosuchtask", "out=z.zarr"], "metaworld"),
        (["task.env_name=pusj-v3", "out=z.zarr"], "push-v3"),
        (["task=multimodal", "episodes=1"], "out="),
    ]:
        r = run_cli(args, cwd=tmp_path)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (args, r.stderr)
    assert not (tmp_path / "z.zarr").exists()


def _interrupt_after(monkeypatch, n):
    """Make the n+1-th episode raise, as a kill during collection would stop it."""
    import robopolicy.collect as collect_mod

    real, calls = collect_mod.run_episode, []

    def run_then_stop(*args, **kwargs):
        if len(calls) == n:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(collect_mod, "run_episode", run_then_stop)


RECIPE = dict(episodes=5, noise=0.3, fail_fraction=0.4, seed=3, progress=False)


def test_append_after_an_interruption_equals_one_run(tmp_path, mm_task, monkeypatch):
    collect(mm_task, out=tmp_path / "one.zarr", **RECIPE)
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        collect(mm_task, out=tmp_path / "two.zarr", **RECIPE)
    monkeypatch.undo()
    assert EpisodeStore.open(tmp_path / "two.zarr").n_episodes == 2
    summary = collect(mm_task, out=tmp_path / "two.zarr", append=True, **RECIPE)
    assert (summary["episodes"], summary["store_episodes"]) == (3, 5)
    one, two = EpisodeStore.open(tmp_path / "one.zarr"), EpisodeStore.open(tmp_path / "two.zarr")
    np.testing.assert_array_equal(one.episode_ends, two.episode_ends)
    for key in one.keys:
        np.testing.assert_array_equal(one.get(key), two.get(key), err_msg=key)
    assert two.attrs["appends"][0]["from_episode"] == 2


def test_episode_seeds_follow_the_seed_blocks(tmp_path, mm_task):
    collect(mm_task, episodes=2, seed=2, out=tmp_path / "s.zarr", progress=False)
    assert EpisodeStore.open(tmp_path / "s.zarr").attrs["episode_seeds"] == [20000, 20001]


def test_existing_store_needs_append_or_overwrite(tmp_path, mm_task):
    collect(mm_task, episodes=1, out=tmp_path / "x.zarr", progress=False)
    with pytest.raises(DataError, match="pass append=true to continue it, overwrite=true to replace it"):
        collect(mm_task, episodes=2, out=tmp_path / "x.zarr", progress=False)
    assert EpisodeStore.open(tmp_path / "x.zarr").n_episodes == 1


def test_append_refuses_other_settings(tmp_path, mm_task):
    collect(mm_task, episodes=1, noise=0.1, out=tmp_path / "x.zarr", progress=False)
    with pytest.raises(DataError, match="collected with noise=0.1 but this run has noise=0.2"):
        collect(mm_task, episodes=2, noise=0.2, out=tmp_path / "x.zarr", append=True, progress=False)
    assert EpisodeStore.open(tmp_path / "x.zarr").n_episodes == 1


# Each env step sleeps 10 ms (an episode takes about 0.5 s), so a loaded machine cannot finish all 12 episodes
# before the parent sees 2 and kills; the sleep changes no data.
KILLED_COLLECT = """
import sys, time
from robopolicy.collect import collect
from robopolicy.defaults import group_config
from robopolicy.envs import make_task
task = make_task(group_config("task", "multimodal"))
make_env = task.make_env
def slow_make_env(**kwargs):
    env = make_env(**kwargs)
    step = env.step
    def slow_step(action):
        time.sleep(0.01)
        return step(action)
    env.step = slow_step
    return env
task.make_env = slow_make_env
collect(task, out=sys.argv[1], episodes=12, noise=0.3, fail_fraction=0.25, seed=4, progress=False)
"""


def test_sigkilled_collect_continues_with_append_to_the_same_store(tmp_path, mm_task):
    import signal
    import time

    path = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_COLLECT, str(path)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if EpisodeStore.open(path, verify=False).n_episodes >= 2:
                    break
            except DataError:  # not there yet, or still being created
                pass
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    n_killed = EpisodeStore.open(path).n_episodes
    assert 2 <= n_killed < 12
    collect(mm_task, out=path, episodes=12, noise=0.3, fail_fraction=0.25, seed=4, progress=False, append=True)
    collect(mm_task, out=tmp_path / "one.zarr", episodes=12, noise=0.3, fail_fraction=0.25, seed=4, progress=False)
    killed, one = EpisodeStore.open(path), EpisodeStore.open(tmp_path / "one.zarr")
    np.testing.assert_array_equal(killed.episode_ends, one.episode_ends)
    for key in one.keys:
        np.testing.assert_array_equal(killed.get(key), one.get(key), err_msg=key)
