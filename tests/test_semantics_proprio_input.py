"""mapper.proprio_input: the mapper's head also gets the robot's own reading (agent_pos), recorded with every frame."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _semantics_toys import dot_frames, tiny_loop_cfg
from omegaconf import OmegaConf

from robopolicy.errors import ConfigError, DataError
from robopolicy.semantics import active
from robopolicy.semantics.data import RealEpisodes
from robopolicy.semantics.mapper import build_mapper, load_mapper, train_mapper
from robopolicy.semantics.oracle import AnnotationOracle
from robopolicy.semantics.proprio import semantics_split
from robopolicy.semantics.strategies import RandomFrames

PUSH = SimpleNamespace(name="planar_push", names=("pusher_x", "pusher_y", "puck_x", "puck_y"), proprio_names=("pusher_x", "pusher_y"))
READING_BOUNDS = ([-1.0, -1.0], [1.0, 1.0])


def _mapper_cfg():
    return OmegaConf.merge(tiny_loop_cfg([-1] * 4, [1] * 4, steps=1).mapper, {"proprio_input": True})


def _trainer(steps):
    return OmegaConf.merge(tiny_loop_cfg([-1] * 4, [1] * 4, steps=1).trainer, {"steps": steps, "batch_size": 32,
                                                                                 "optim": {"lr": 3e-3, "warmup_steps": 5}})


def test_a_proprio_input_mapper_reads_what_the_image_does_not_show(tmp_path):
    # Every image is blank: the target (an object held in the hand, at the hand's x) is in the reading only.
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    reading = rng.uniform(-0.9, 0.9, (128, 2)).astype(np.float32)
    images, target = np.zeros((128, 1, 16, 16, 3), np.uint8), reading[:, :1].copy()
    mapper = build_mapper(_mapper_cfg(), (16, 16, 3), [-1.0], [1.0], ["puck_x"], READING_BOUNDS)
    mapper = train_mapper(mapper, images, target, _trainer(300), tmp_path, seed=0, bootstrap=False, reading=reading)
    test = rng.uniform(-0.9, 0.9, (64, 2)).astype(np.float32)
    err = np.abs(mapper.predict(np.zeros((64, 1, 16, 16, 3), np.uint8), test)[0] - test[:, :1]).mean()
    assert err < 0.1 * np.abs(test[:, 0]).mean(), err


def test_a_proprio_input_mapper_refuses_images_without_the_reading():
    mapper = build_mapper(_mapper_cfg(), (16, 16, 3), [-1.0], [1.0], ["puck_x"], READING_BOUNDS)
    with pytest.raises(DataError, match="proprio_input"):
        mapper.predict(np.zeros((2, 1, 16, 16, 3), np.uint8))


def test_proprio_input_without_the_reading_bounds_is_a_config_error():
    with pytest.raises(ConfigError, match="proprio_input"):
        build_mapper(_mapper_cfg(), (16, 16, 3), [-1.0], [1.0], ["puck_x"])


def test_a_saved_proprio_input_mapper_loads_with_its_reading_input(tmp_path):
    rng = np.random.default_rng(0)
    images, reading = rng.integers(0, 256, (8, 1, 16, 16, 3), dtype=np.uint8), rng.uniform(-1, 1, (8, 2)).astype(np.float32)
    mapper = build_mapper(_mapper_cfg(), (16, 16, 3), [-1.0], [1.0], ["puck_x"], READING_BOUNDS)
    mapper = train_mapper(mapper, images, reading[:, :1], _trainer(2), tmp_path, seed=0, bootstrap=False, reading=reading)
    loaded = load_mapper(tmp_path)
    np.testing.assert_allclose(loaded.predict(images, reading)[0], mapper.predict(images, reading)[0], atol=1e-6)


def _toy(with_reading: bool):
    rng = np.random.default_rng(0)
    images, actions, truths, readings = [], [], [], []
    for _ in range(2):
        xy = rng.uniform(-0.8, 0.8, (6, 2)).astype(np.float32)
        images.append(dot_frames(xy, 16))
        actions.append(np.zeros((5, 2), np.float32))
        truths.append(np.c_[xy, xy / 2])
        readings.append(xy.copy())
    return RealEpisodes(images, actions, proprio=readings if with_reading else None), truths


def _loop_cfg():
    return OmegaConf.merge(tiny_loop_cfg([-1] * 4, [1] * 4, steps=2), {"mapper": {"proprio_input": True}})


def test_the_loop_trains_a_mapper_on_the_recorded_readings(tmp_path):
    data, truths = _toy(with_reading=True)
    seen = []
    active.run_active(RandomFrames(), data, AnnotationOracle(truths, 2, 0.0), None, _loop_cfg(), tmp_path, seed=0,
                      on_round=lambda m, labels, n: seen.append(m.needs_reading) or {}, split=semantics_split(PUSH, ["pusher_x", "pusher_y"]))
    assert seen == [True]


def test_the_loop_refuses_proprio_input_on_episodes_without_readings(tmp_path):
    data, truths = _toy(with_reading=False)
    with pytest.raises(ConfigError, match="cache_dir"):
        active.run_active(RandomFrames(), data, AnnotationOracle(truths, 2, 0.0), None, _loop_cfg(), tmp_path, seed=0,
                          split=semantics_split(PUSH, []))


def test_the_actor_hands_the_robots_reading_to_the_mapper():
    from robopolicy.semantics.transfer import MapperActor

    class Spy:
        n_frames, semantics_names = 1, None

        def __init__(self):
            self.readings = []

        def predict(self, images, reading=None):
            self.readings.append(reading)
            return np.zeros((1, 4), np.float32), None

    class Still:
        def reset(self):
            pass

        def act(self, state, step_seed):
            return np.zeros(2, np.float32)

    spy = Spy()
    actor = MapperActor(spy, Still(), 1, semantics_split(PUSH, []))
    actor.reset(0)
    actor.act({"image": np.zeros((16, 16, 3), np.uint8), "agent_pos": np.array([0.1, -0.2], np.float32)}, None, 0)
    np.testing.assert_array_equal(spy.readings[0], np.array([[0.1, -0.2]], np.float32))


def test_collected_episodes_record_the_robots_reading_at_every_frame():
    from robopolicy.defaults import constructor_kwargs, group_config
    from robopolicy.envs import make_task
    from robopolicy.semantics.data import collect_real_episodes

    task = make_task(group_config("task", "planar_push", {"max_episode_steps": 5}))
    real = constructor_kwargs(group_config("semantics/real_env", "same_dynamics", {"image_size": 16}))
    data, truths = collect_real_episodes(task, real, episodes=1, seed=3, behaviour_noise=0.3, reach_steps=0)
    np.testing.assert_allclose(data.proprio[0], truths[0][:, :2], atol=1e-6)  # planar push: agent_pos is the pusher xy


def test_the_cache_keeps_the_readings(tmp_path):
    from robopolicy.semantics.experiment import _Cache

    cfg = OmegaConf.create({"cache_dir": str(tmp_path), **{k: {} for k in ("task", "real_env", "data", "transfer", "vae", "vae_trainer")}})
    data, truths = _toy(with_reading=True)
    _Cache(cfg).episodes("offline", lambda: (data, truths))
    again, _ = _Cache(cfg).episodes("offline", lambda: pytest.fail("the cached episodes were not found"))
    np.testing.assert_array_equal(np.concatenate(again.proprio), np.concatenate(data.proprio))

