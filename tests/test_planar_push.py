"""Planar push task: spec, reproducible resets, exact set/get semantics, expert success, images."""

import numpy as np
import pytest

from robopolicy.envs import make_task
from robopolicy.errors import TaskError


def _cfg(**over):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load("tasks/planar_push.yaml")
    for k, v in over.items():
        OmegaConf.update(cfg, k, v)
    return cfg


def _rollout(env, task, seed, steps=40):
    obs, _ = env.reset(seed=seed)
    expert = task.make_expert(np.random.default_rng(seed))
    states, actions = [obs["state"]], []
    for _ in range(steps):
        a = expert.act(obs, env)
        obs, *_ = env.step(a)
        states.append(obs["state"])
        actions.append(a)
    return np.array(states), np.array(actions)


def test_spec_and_reproducible_reset():
    task = make_task(_cfg())
    env = task.make_env()
    assert task.spec.obs["state"].shape == (4,) and task.spec.action_dim == 2
    s1, a1 = _rollout(env, task, seed=3)
    s2, a2 = _rollout(env, task, seed=3)
    s3, _ = _rollout(env, task, seed=4)
    assert s1.dtype == np.float32
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(s1[0], s3[0])


def test_semantics_set_the_whole_state():
    """set_semantics(s_t) then step(a_t) reproduces s_{t+1} bit for bit: T(s, a) is a function of the semantics."""
    task = make_task(_cfg())
    env = task.make_env()
    states, actions = _rollout(env, task, seed=5, steps=60)
    assert np.linalg.norm(states[-1, 2:] - states[0, 2:]) > 0.02, "the expert should have moved the puck"
    sim = task.make_env()
    sim.reset(seed=0)
    for t in range(len(actions)):
        sim.unwrapped.set_semantics(states[t])
        np.testing.assert_array_equal(sim.unwrapped.get_semantics(), states[t])
        obs, *_ = sim.step(actions[t])
        np.testing.assert_array_equal(obs["state"], states[t + 1])
    with pytest.raises(TaskError):
        sim.unwrapped.set_semantics(np.zeros(3))


def test_expert_success_rate():
    task = make_task(_cfg())
    env = task.make_env()
    wins = 0
    for seed in range(20):
        obs, _ = env.reset(seed=100 + seed)
        expert = task.make_expert(np.random.default_rng(seed))
        for _ in range(env.unwrapped.max_episode_steps):
            obs, _, term, trunc, info = env.step(expert.act(obs, env))
            if info["success"]:
                break
        wins += bool(info["success"])
    assert wins >= 18, f"expert succeeded in {wins}/20"


def test_image_shows_the_puck_where_it_is():
    task = make_task(_cfg(**{"image.enabled": True, "image.size": 32}))
    env = task.make_env()
    try:
        obs, _ = env.reset(seed=0)
        img = obs["image"]
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        env.unwrapped.set_semantics(np.array([-0.2, -0.2, 0.0, 0.0]))
        a = env.render()
        env.unwrapped.set_semantics(np.array([-0.2, -0.2, -0.15, 0.1]))
        b = env.render()
        assert np.abs(a.astype(int) - b.astype(int)).sum() > 0
        red = lambda im: np.argwhere((im[..., 0] > 150) & (im[..., 1] < 100))  # noqa: E731
        # The puck moved left (-x) and up (+y): its red pixels move left and to the top of the picture.
        ca, cb = red(a).mean(0), red(b).mean(0)
        assert cb[1] < ca[1] and cb[0] < ca[0]
    finally:
        env.close()
