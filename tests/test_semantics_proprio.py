"""semantics.proprio_semantics: coordinates the robot measures itself come from its reading, the mapper predicts the rest."""

from types import SimpleNamespace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from _semantics_toys import dot_frames, tiny_loop_cfg
from omegaconf import OmegaConf

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.errors import ConfigError
from robopolicy.semantics import active
from robopolicy.semantics.data import RealEpisodes
from robopolicy.semantics.oracle import AnnotationOracle
from robopolicy.semantics.proprio import semantics_split
from robopolicy.semantics.strategies import RandomFrames

PUSH = SimpleNamespace(name="planar_push", names=("pusher_x", "pusher_y", "puck_x", "puck_y"), proprio_names=("pusher_x", "pusher_y"))
PUSHER = ["pusher_x", "pusher_y"]


def _toy(n_episodes=2, length=6, size=16, seed=0):
    """Frames with one bright dot; semantics (pusher xy = the dot, puck xy = 0.5 + the dot / 2) -> data, truths."""
    rng = np.random.default_rng(seed)
    images, actions, truths = [], [], []
    for _ in range(n_episodes):
        xy = rng.uniform(-0.8, 0.8, (length, 2)).astype(np.float32)
        images.append(dot_frames(xy, size))
        actions.append(np.zeros((length - 1, 2), np.float32))
        truths.append(np.c_[xy, 0.5 + xy / 2])
    return RealEpisodes(images, actions), truths


def _cfg():
    return tiny_loop_cfg([-1, -1, -2, -2], [1, 1, 2, 2], steps=2)


def _loop(tmp_path, proprio):
    data, truths = _toy()
    mappers = []
    active.run_active(RandomFrames(), data, AnnotationOracle(truths, 2, 0.0), None, _cfg(), tmp_path, seed=0,
                      on_round=lambda m, labels, n: mappers.append(m) or {}, split=semantics_split(PUSH, proprio))
    return mappers[-1], data


class GarbageMapper:
    """Answers 9.0 for every coordinate of the task (a mapper saved before the setting: no semantics_names)."""

    n_frames = 1

    def predict(self, images, reading=None):
        return np.full((len(images), 4), 9.0, np.float32), None


class Recorder:
    def __init__(self):
        self.got = []

    def reset(self):
        pass

    def act(self, state, step_seed, shadow=False):
        self.got.append(np.array(state))
        return np.zeros(2, np.float32)


def test_mapper_predicts_only_the_coordinates_the_robot_does_not_measure(tmp_path):
    mapper, data = _loop(tmp_path, PUSHER)
    mean, members = mapper.predict(data.stacked(np.arange(3)))
    assert (mean.shape, members.shape, mapper.semantics_names) == ((3, 2), (2, 3, 2), ("puck_x", "puck_y"))


def test_mapper_targets_are_the_unmeasured_columns_of_the_full_labels(tmp_path, monkeypatch):
    seen = []
    real_train = active.train_mapper

    def spy(model, images, semantics, *args, **kwargs):
        seen.append(np.array(semantics))
        return real_train(model, images, semantics, *args, **kwargs)

    monkeypatch.setattr(active, "train_mapper", spy)
    data, truths = _toy()
    labels = []
    active.run_active(RandomFrames(), data, AnnotationOracle(truths, 2, 0.0), None, _cfg(), tmp_path, seed=0,
                      on_round=lambda m, lab, n: labels.append(lab.labels[lab.labeled].copy()) or {},
                      split=semantics_split(PUSH, PUSHER))
    np.testing.assert_array_equal(seen[0], labels[0][:, 2:4])


def test_mapper_bounds_are_those_of_the_predicted_coordinates(tmp_path):
    mapper, _ = _loop(tmp_path, ["pusher_y"])
    np.testing.assert_array_equal(mapper.low.numpy(), [-1, -2, -2])  # pusher_x, puck_x, puck_y


def test_without_proprio_the_mapper_predicts_everything_in_task_order(tmp_path):
    mapper, data = _loop(tmp_path, [])
    assert (mapper.predict(data.stacked(np.arange(3)))[0].shape, mapper.semantics_names) == ((3, 4), PUSH.names)


def test_saved_names_come_back_with_the_checkpoint(tmp_path):
    from robopolicy.semantics.mapper import load_mapper

    _loop(tmp_path, PUSHER)
    assert load_mapper(tmp_path / "round_00").semantics_names == ("puck_x", "puck_y")


def test_mapper_saved_without_names_loads_and_predicts_everything(tmp_path):
    from robopolicy.semantics.mapper import build_mapper, load_mapper, train_mapper

    data, truths = _toy()
    cfg = _cfg()
    old = build_mapper(cfg.mapper, (16, 16, 3), cfg.semantics_low, cfg.semantics_high)  # no names: as saved before the setting
    train_mapper(old, data.stacked(np.arange(4)), np.concatenate(truths)[:4], OmegaConf.merge(cfg.trainer, {"steps": 1}),
                 tmp_path, seed=0, bootstrap=False)
    loaded = load_mapper(tmp_path)
    assert (loaded.semantics_names, loaded.predict(data.stacked(np.arange(2)))[0].shape) == (None, (2, 4))


def test_actor_takes_the_listed_coordinates_from_the_robot_reading():
    from robopolicy.semantics.transfer import MapperActor

    ctrl = Recorder()
    actor = MapperActor(GarbageMapper(), ctrl, 1, semantics_split(PUSH, PUSHER))
    actor.reset(0)
    actor.act({"image": np.zeros((16, 16, 3), np.uint8), "agent_pos": np.array([0.1, -0.2], np.float32)}, None, 0)
    np.testing.assert_array_equal(ctrl.got[0], np.array([0.1, -0.2, 9.0, 9.0], np.float32))


def test_actor_places_a_subset_mapper_output_by_name():
    from robopolicy.semantics.transfer import MapperActor

    class PuckOnly(GarbageMapper):
        semantics_names = ("puck_x", "puck_y")

        def predict(self, images, reading=None):
            return np.array([[3.0, 4.0]], np.float32), None

    ctrl = Recorder()
    actor = MapperActor(PuckOnly(), ctrl, 1, semantics_split(PUSH, PUSHER))
    actor.reset(0)
    actor.act({"image": np.zeros((16, 16, 3), np.uint8), "agent_pos": np.array([0.1, -0.2], np.float32)}, None, 0)
    np.testing.assert_array_equal(ctrl.got[0], np.array([0.1, -0.2, 3.0, 4.0], np.float32))


def test_transfer_feeds_the_real_robots_pusher_reading():
    from robopolicy.defaults import constructor_kwargs, group_config
    from robopolicy.envs import make_task
    from robopolicy.semantics.transfer import ExpertController, evaluate_transfer

    task = make_task(group_config("task", "planar_push", {"max_episode_steps": 6}))
    real = constructor_kwargs(group_config("semantics/real_env", "same_dynamics", {"image_size": 16}))
    m = evaluate_transfer(GarbageMapper(), ExpertController(task), task, real, episodes=1, seed=7, proprio=PUSHER)
    assert m["pusher_error_m"] == 0.0  # the controller got the true pusher position at every step; the puck is garbage


def test_real_planar_env_reading_is_the_true_pusher_position():
    from robopolicy.defaults import constructor_kwargs, group_config
    from robopolicy.envs import make_task
    from robopolicy.semantics.tasks import semantics_task

    sem = semantics_task(make_task(group_config("task", "planar_push", {"max_episode_steps": 6})))
    env = sem.make_real_env(**constructor_kwargs(group_config("semantics/real_env", "default", {"image_size": 16})))
    obs, _ = env.reset(seed=3)
    obs, *_ = env.step(np.array([0.5, -0.5], np.float32))
    np.testing.assert_array_equal(obs["agent_pos"], env.true_semantics()[[sem.names.index(n) for n in sem.proprio_names]])
    env.close()


@pytest.mark.parametrize("setting", ["mass_scale", "friction_scale", "pixel_noise_std", "camera_jitter_m"])
def test_a_negative_planar_gap_setting_is_refused_by_name(setting):
    from robopolicy.defaults import constructor_kwargs, group_config
    from robopolicy.envs import make_task
    from robopolicy.semantics.tasks import semantics_task

    sem = semantics_task(make_task(group_config("task", "planar_push", {"max_episode_steps": 6})))
    with pytest.raises(ConfigError, match=setting):
        sem.make_real_env(**constructor_kwargs(group_config("semantics/real_env", "default", {"image_size": 16, setting: -1.0})))


def test_a_coordinate_the_robot_does_not_measure_is_refused():
    with pytest.raises(ConfigError, match=r"\['puck_x'\].*\['pusher_x', 'pusher_y'\]"):
        semantics_split(PUSH, ["pusher_x", "puck_x"])


def test_the_experiment_refuses_an_unknown_name_before_collecting_data(tmp_path):
    from robopolicy.semantics.experiment import main_modes

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics", overrides=[f"run_dir={tmp_path / 'run'}", "proprio_semantics=[hand_x]"])
    with pytest.raises(ConfigError, match="hand_x"):
        main_modes(cfg)
    assert not (tmp_path / "run").exists()


def test_a_mapper_trained_with_proprio_needs_the_setting_at_transfer():
    with pytest.raises(ConfigError, match=r"proprio_semantics=\[pusher_x,pusher_y\]"):
        semantics_split(PUSH, []).check_mapper(("puck_x", "puck_y"))


def test_default_setting_is_empty():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics")
    assert list(cfg.proprio_semantics) == []


def test_offline_error_of_a_group_read_from_the_robot_is_zero():
    from robopolicy.semantics.tasks import PlanarPushSemantics
    from robopolicy.semantics.transfer import offline_semantics_error

    task = PlanarPushSemantics.__new__(PlanarPushSemantics)  # names and groups only: no simulator needed
    task.task = SimpleNamespace(name="planar_push")
    truth = np.tile(np.array([[0.1, 0.2, 0.0, 0.0]], np.float32), (3, 1))
    out = offline_semantics_error(GarbageMapper(), np.zeros((3, 1, 8, 8, 3), np.uint8), truth, task, PUSHER)
    assert out["offline_pusher_error_m"] == 0.0


def test_a_name_instead_of_a_list_is_refused(tmp_path):
    from robopolicy.semantics.experiment import main_modes

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics", overrides=[f"run_dir={tmp_path / 'run'}", "proprio_semantics=pusher_x"])
    with pytest.raises(ConfigError, match=r"must be a list"):
        main_modes(cfg)
