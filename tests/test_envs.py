"""Tasks: Meta-World wrapper (all 50 names, seeding, expert, images) and the multimodal scene."""

import numpy as np
import pytest

from robopolicy.envs import make_task
from robopolicy.defaults import group_config
from robopolicy.envs.metaworld import metaworld_env_names
from robopolicy.envs.multimodal import MultimodalTask
from robopolicy.errors import TaskError


def mw_task(**over):
    """tasks/metaworld.yaml with ``over`` changed (the one place its defaults live)."""
    return make_task(group_config("task", "metaworld", over))


def rollout(env, expert, seed, max_steps=None):
    """Run one episode; returns (success, info of the last step, number of steps, states (T+1, D))."""
    obs, info = env.reset(seed=seed)
    expert.reset()
    states = [obs["state"]]
    for t in range(max_steps or env.max_episode_steps):  # noqa: B007 - the step count is returned
        obs, _, terminated, truncated, info = env.step(expert.act(obs, env))
        states.append(obs["state"])
        if info["success"] or terminated or truncated:
            break
    return bool(info["success"]), info, t + 1, np.stack(states)


# -- Meta-World --------------------------------------------------------------------------------

def test_metaworld_has_50_names():
    names = metaworld_env_names()
    assert len(names) == 50 and "push-v3" in names and all(n.endswith("-v3") for n in names)


@pytest.mark.parametrize("env_name", metaworld_env_names())
def test_every_metaworld_task_builds_resets_and_steps(env_name):
    # fresh_positions skips metaworld's 50-variation pre-sampling, which is what makes this fast.
    task = mw_task(env_name=env_name, fresh_positions=True, max_episode_steps=3)
    env = task.make_env()
    try:
        obs, info = env.reset(seed=0)
        assert set(obs) == {"state"} and obs["state"].shape == (39,) and obs["state"].dtype == np.float32
        assert info["success"] is False
        expert = task.make_expert(np.random.default_rng(0))
        obs, reward, terminated, truncated, info = env.step(expert.act(obs, env))
        assert np.isfinite(obs["state"]).all() and isinstance(info["success"], bool)
        assert np.isfinite(reward) and not terminated and not truncated
        assert task.spec.action_dim == 4 and task.spec.name == env_name
    finally:
        env.close()


def test_unknown_metaworld_name_names_close_matches():
    with pytest.raises(TaskError, match="push-v3"):
        mw_task(env_name="pussh-v3")
    with pytest.raises(TaskError, match="Unknown Meta-World task"):
        mw_task(env_name="nonsense")  # through make_task, which drops the meta_keys
    with pytest.raises(TaskError, match="max_episode_steps"):
        mw_task(env_name="push-v3", max_episode_steps=501)


@pytest.fixture(scope="module")
def push_task():
    return mw_task(env_name="push-v3")


def test_metaworld_seeded_reset_is_reproducible(push_task):
    env_a, env_b = push_task.make_env(), push_task.make_env()
    obs_a, info_a = env_a.reset(seed=7)
    env_a.reset(seed=8)  # other seeds in between must not matter
    obs_a2, info_a2 = env_a.reset(seed=7)
    obs_b, info_b = env_b.reset(seed=7)
    np.testing.assert_array_equal(obs_a["state"], obs_a2["state"])
    np.testing.assert_array_equal(obs_a["state"], obs_b["state"])
    assert info_a["variation"] == info_b["variation"] >= 0
    # Different seeds reach different variations (object/goal positions).
    starts = {tuple(np.round(env_a.reset(seed=s)[0]["state"][4:7], 4)) for s in range(6)}
    assert len(starts) >= 3
    # Steps replay identically too.
    env_a.reset(seed=7)
    env_b.reset(seed=7)
    a = np.array([0.5, -0.2, 0.1, 0.3], np.float32)
    np.testing.assert_array_equal(env_a.step(a)[0]["state"], env_b.step(a)[0]["state"])


def test_metaworld_fresh_positions_are_seeded_and_new(push_task):
    fresh = mw_task(env_name="push-v3", fresh_positions=True)
    env = fresh.make_env()
    first = env.reset(seed=11)[0]["state"]
    np.testing.assert_array_equal(first, env.reset(seed=11)[0]["state"])
    assert env.reset(seed=11)[1]["variation"] == -1
    standard = {tuple(np.round(pickle_rand_vec(v), 6)) for v in push_task.variations()}
    drawn = tuple(np.round(env.sawyer._last_rand_vec, 6))
    assert drawn not in standard  # a position outside the 50 pre-sampled variations


def pickle_rand_vec(variation):
    import pickle

    return pickle.loads(variation.data)["rand_vec"]


def test_metaworld_expert_succeeds():
    task = mw_task(env_name="drawer-close-v3", fresh_positions=True)
    env, expert = task.make_env(), task.make_expert(np.random.default_rng(0))
    results = [rollout(env, expert, seed) for seed in range(2)]
    assert all(success for success, *_ in results)
    assert all(steps < task.max_episode_steps for _, _, steps, _ in results)


def test_metaworld_camera_image():
    task = mw_task(env_name="reach-v3", fresh_positions=True, image={"enabled": True, "size": 32, "camera": "corner2"})
    assert task.spec.obs["image"].shape == (32, 32, 3) and task.spec.rgb_keys == ["image"]
    env = task.make_env()
    try:
        obs, _ = env.reset(seed=0)
        img = obs["image"]
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and img.std() > 5  # a real picture
        moved = env.step(np.array([1, 0, 1, 0], np.float32))[0]["image"]
        for _ in range(10):
            moved = env.step(np.array([1, 0, 1, 0], np.float32))[0]["image"]
        assert np.abs(moved.astype(int) - img).sum() > 0  # the arm moved in the picture
    finally:
        env.close()
    env = task.make_env(render=False)
    assert set(env.reset(seed=0)[0]) == {"state"}


# -- multimodal --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mm_task():
    return make_task(group_config("task", "multimodal"))


def test_multimodal_expert_reaches_goal_both_ways(mm_task):
    env = mm_task.make_env()
    expert = mm_task.make_expert(np.random.default_rng(0))
    results = [rollout(env, expert, seed) for seed in range(20)]
    assert np.mean([r[0] for r in results]) >= 0.95
    modes = [r[1]["mode"] for r in results]
    assert modes.count("left") >= 5 and modes.count("right") >= 5 and None not in modes
    assert max(r[2] for r in results) < mm_task.max_episode_steps


def test_multimodal_mode_reports_the_side_taken(mm_task):
    env = mm_task.make_env()
    cx = mm_task.obstacle[0]
    for side, name in [(-1, "left"), (1, "right")]:
        success, info, _, states = rollout(env, mm_task.make_expert(np.random.default_rng(1), side=side), seed=3)
        assert success and info["mode"] == name
        band = np.abs(states[:, 1] - mm_task.obstacle[1]) <= mm_task.obstacle[3]
        assert band.any() and np.all(np.sign(states[band, 0] - cx) == side)


def test_averaging_the_two_modes_fails(mm_task):
    env = mm_task.make_env()
    averaged = mm_task.make_averaged_expert(np.random.default_rng(0))
    results = [rollout(env, averaged, seed) for seed in range(5)]
    assert not any(r[0] for r in results)
    assert all(r[1]["mode"] is None for r in results)  # never got past the block
    assert all(r[3][-1, 1] < mm_task.obstacle[1] for r in results)  # stuck below it


def test_multimodal_seeded_reset_and_jitter(mm_task):
    env = mm_task.make_env()
    a = env.reset(seed=5)[0]["state"]
    np.testing.assert_array_equal(a, mm_task.make_env().reset(seed=5)[0]["state"])
    starts = np.stack([env.reset(seed=s)[0]["state"] for s in range(10)])
    assert starts[:, [0, 1, 4, 5]].std(axis=0).min() > 0.01  # start and goal jitter per seed
    assert a.dtype == np.float32 and a.shape == (6,)


def test_multimodal_image_and_yaml():
    from omegaconf import OmegaConf

    from robopolicy.cli._hydra import CONF_DIR

    cfg = OmegaConf.load(CONF_DIR / "task" / "multimodal.yaml")
    cfg.image.enabled, cfg.image.size = True, 24
    task = make_task(cfg)
    assert isinstance(task, MultimodalTask) and task.spec.obs["image"].shape == (24, 24, 3)
    env = task.make_env()
    try:
        img = env.reset(seed=0)[0]["image"]
        assert img.shape == (24, 24, 3) and img.dtype == np.uint8 and img.std() > 5
    finally:
        env.close()
    with pytest.raises(TaskError, match="task.scene"):
        make_task(group_config("task", "multimodal", {"scene": "assets/nope.xml"}))
