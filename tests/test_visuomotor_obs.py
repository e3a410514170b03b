"""Visuomotor observations: proprio + named cameras, no privileged state; image policies refuse it."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.data.normalize import Normalizer
from robopolicy.envs import make_task
from robopolicy.errors import ConfigError, TaskError
from robopolicy.nets.encoders import PrivilegedInputError
from robopolicy.policies.build import build_policy


def _cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=["dataset=x.zarr", "run_dir=r", "net=mlp", "net.hidden_dims=[16]",
                                           "+encoder@policy.encoder=small_cnn", "policy.encoder.rgb.channels=[8,8]",
                                           "policy.encoder.rgb.strides=[2,2]", "policy.encoder.rgb.num_kp=4",
                                           "policy.encoder.rgb.feature_dim=8", *overrides])


def _policy(cfg):
    task = make_task(cfg.task)
    spec = task.spec
    lowdim = [k for k in (cfg.policy.obs_keys or spec.obs) if spec.obs[k].kind == "lowdim"]
    return build_policy(cfg, spec, Normalizer.empty_for_spec(spec, lowdim))


def test_visuomotor_multimodal_env_emits_proprio_and_cameras_only():
    task = make_task(_cfg(["task=multimodal", "task.obs=visuomotor", "task.cameras=[top]", "task.camera_size=32"]).task)
    env = task.make_env()
    try:
        obs, _ = env.reset(seed=3)
        assert set(obs) == {"agent_pos", "top"}
        assert obs["top"].shape == (32, 32, 3)
        assert obs["top"].dtype == np.uint8
        np.testing.assert_array_equal(obs["agent_pos"], env.unwrapped.privileged_state()[:2])
        assert set(task.spec.obs) == set(obs)
    finally:
        env.close()


def test_visuomotor_metaworld_two_cameras_and_expert_without_state():
    task = make_task(_cfg(["task=metaworld", "task.env_name=drawer-close-v3", "task.fresh_positions=true", "task.obs=visuomotor",
                           "task.cameras=[corner2,gripperPOV]", "task.camera_size=24"]).task)
    env = task.make_env()
    try:
        obs, _ = env.reset(seed=0)
        assert sorted(obs) == ["agent_pos", "corner2", "gripperPOV"]
        np.testing.assert_allclose(obs["agent_pos"], env.privileged_state()[:4])
        action = task.make_expert(np.random.default_rng(0)).act(obs, env)  # reads the env's state, not obs
        assert action.shape == (4,)
        assert not np.array_equal(obs["corner2"], obs["gripperPOV"])
    finally:
        env.close()


def test_visuomotor_needs_a_camera():
    with pytest.raises(TaskError, match="task.cameras"):
        make_task(_cfg(["task=multimodal", "task.obs=visuomotor", "task.cameras=[]"]).task)


def test_image_policy_refuses_privileged_state_by_default():
    cfg = _cfg(["task=multimodal", "task.obs=all", "task.camera_size=32"])
    with pytest.raises(PrivilegedInputError, match="allow_privileged"):
        _policy(cfg)


def test_image_policy_reads_privileged_state_only_when_allowed_by_name():
    cfg = _cfg(["task=multimodal", "task.obs=all", "task.camera_size=32", "policy.encoder.allow_privileged=[state]"])
    assert "state" in _policy(cfg).obs_keys


def test_visuomotor_policy_builds_without_state():
    cfg = _cfg(["task=multimodal", "task.obs=visuomotor", "task.camera_size=32"])
    policy = _policy(cfg)
    assert sorted(policy.obs_keys) == ["agent_pos", "top"]


def test_legacy_image_key_counts_as_a_camera_for_the_guard():
    cfg = _cfg(["task=multimodal", "task.image.enabled=true", "task.image.size=32"])
    with pytest.raises(ConfigError, match="privileged"):
        _policy(cfg)


def test_collect_stores_every_camera_key(tmp_path):
    from robopolicy.collect import collect
    from robopolicy.data import EpisodeStore

    cfg = _cfg(["task=multimodal", "task.obs=visuomotor", "task.camera_size=16", "task.max_episode_steps=4",
                "task.image.enabled=true", "task.image.size=16"])
    collect(cfg.task, 1, out=tmp_path / "s.zarr", progress=False, stop_after_success=None)
    store = EpisodeStore.open(tmp_path / "s.zarr")
    assert sorted(store.keys) == ["action", "agent_pos", "done", "image", "reward", "success", "top"]
    assert store.get("top").shape == (4, 16, 16, 3)
    assert store.spec.rgb_keys == ["top", "image"]
