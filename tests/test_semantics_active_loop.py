"""The active-learning loop: a fixed training budget per round, and a stopped run continues where it stopped."""

import numpy as np
import pytest
from _semantics_toys import dot_frames, tiny_loop_cfg
from omegaconf import OmegaConf

from robopolicy.semantics import active
from robopolicy.semantics.data import RealEpisodes
from robopolicy.semantics.oracle import AnnotationOracle
from robopolicy.semantics.strategies import RandomFrames, Variance


def _toy(n_episodes=3, length=8, size=16, seed=0):
    """Episodes of 16x16 frames with one bright dot at the pusher (x, y); puck fixed. -> data, truths."""
    rng = np.random.default_rng(seed)
    images, actions, truths = [], [], []
    for _ in range(n_episodes):
        xy = np.cumsum(rng.uniform(-0.1, 0.1, (length, 2)), 0).clip(-0.8, 0.8).astype(np.float32)
        images.append(dot_frames(xy, size))
        actions.append(np.zeros((length - 1, 2), np.float32))
        truths.append(np.c_[xy, np.zeros_like(xy)])
    return RealEpisodes(images, actions), truths


def _cfg(steps=3):
    return tiny_loop_cfg([-1, -1, -1, -1], [1, 1, 1, 1], steps)


def test_every_round_trains_the_configured_steps_whatever_the_labelled_set(tmp_path, monkeypatch):
    data, truths = _toy()
    seen = []
    real_train = active.train_mapper

    def spy(model, images, semantics, trainer_cfg, run_dir, seed, bootstrap, reading=None):
        seen.append((len(images), int(trainer_cfg.steps)))
        return real_train(model, images, semantics, trainer_cfg, run_dir, seed=seed, bootstrap=bootstrap, reading=reading)

    monkeypatch.setattr(active, "train_mapper", spy)
    oracle = AnnotationOracle(truths, budget=6, noise_std=0.0)
    active.run_active(RandomFrames(), data, oracle, None, _cfg(steps=5), tmp_path, seed=0)
    assert seen == [(2, 5), (4, 5), (6, 5)]


class _Stop(Exception):
    pass


@pytest.mark.parametrize("strategy", [RandomFrames, Variance])
def test_a_stopped_run_continues_to_the_same_picks(tmp_path, strategy):
    data, truths = _toy()
    full = active.run_active(strategy(), data, AnnotationOracle(truths, 6, 0.01, np.random.default_rng(1)), None, _cfg(),
                             tmp_path / "full", on_round=lambda m, lab, a: {"picked": list(lab.annotated)}, seed=3)

    def stop_in_round_1(m, lab, a):
        if a > 2:
            raise _Stop
        return {"picked": list(lab.annotated)}

    with pytest.raises(_Stop):
        active.run_active(strategy(), data, AnnotationOracle(truths, 6, 0.01, np.random.default_rng(1)), None, _cfg(),
                          tmp_path / "part", on_round=stop_in_round_1, seed=3)
    evaluated = []

    def record(m, lab, a):
        evaluated.append(a)
        return {"picked": list(lab.annotated)}

    again = active.run_active(strategy(), data, AnnotationOracle(truths, 6, 0.01, np.random.default_rng(1)), None, _cfg(),
                              tmp_path / "part", on_round=record, seed=3)
    assert evaluated == [4, 6]  # round 0 was not redone
    assert [r["picked"] for r in again] == [r["picked"] for r in full]


def test_sweep_cache_gives_back_the_stored_data_without_recomputing(tmp_path):
    from robopolicy.semantics.experiment import _Cache

    cfg = OmegaConf.create({"cache_dir": str(tmp_path), "task": {"a": 1}, "real_env": {}, "data": {}, "transfer": {},
                            "vae": {}, "vae_trainer": {}})
    data, truths = _toy()
    _Cache(cfg).episodes("offline", lambda: (data, truths))

    def fail():
        raise AssertionError("recomputed")

    got, got_truths = _Cache(cfg).episodes("offline", fail)
    np.testing.assert_array_equal(np.concatenate(got.images), np.concatenate(data.images))
    np.testing.assert_array_equal(np.concatenate(got_truths), np.concatenate(truths))

def test_cached_episodes_of_a_setting_never_run_are_refused(tmp_path):
    from robopolicy.errors import ConfigError
    from robopolicy.semantics.experiment import cached_episodes

    cfg = OmegaConf.create({"cache_dir": str(tmp_path), "task": {"a": 1}, "real_env": {}, "data": {}, "transfer": {},
                            "vae": {}, "vae_trainer": {}})
    with pytest.raises(ConfigError, match="No offline episodes of this setting"):
        cached_episodes(cfg, "offline")


def test_cached_episodes_are_those_the_run_stored(tmp_path):
    from robopolicy.semantics.experiment import _Cache, cached_episodes

    cfg = OmegaConf.create({"cache_dir": str(tmp_path), "task": {"a": 1}, "real_env": {}, "data": {}, "transfer": {},
                            "vae": {}, "vae_trainer": {}})
    data, truths = _toy()
    _Cache(cfg).episodes("test", lambda: (data, truths))
    got, _ = cached_episodes(cfg, "test")
    np.testing.assert_array_equal(np.concatenate(got.images), np.concatenate(data.images))


def test_sweep_cache_keeps_settings_apart(tmp_path):
    from robopolicy.semantics.experiment import _Cache

    cfg = OmegaConf.create({"cache_dir": str(tmp_path), "task": {"a": 1}, "real_env": {}, "data": {}, "transfer": {},
                            "vae": {}, "vae_trainer": {}})
    _Cache(cfg).array("offline_x", lambda: np.ones(3))
    other = OmegaConf.merge(cfg, {"data": {"episodes": 5}})
    assert _Cache(other).array("offline_x", lambda: np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_sweep_cache_keeps_latents_of_other_vae_settings_apart(tmp_path):
    from robopolicy.semantics.experiment import _Cache

    cfg = OmegaConf.create({"cache_dir": str(tmp_path), "task": {"a": 1}, "real_env": {}, "data": {}, "transfer": {},
                            "vae": {}, "vae_trainer": {}})
    other = OmegaConf.merge(cfg, {"vae": {"beta": 0.5}})
    _Cache(cfg).array(_Cache(cfg).latents_name(0), lambda: np.ones(3))
    assert _Cache(other).array(_Cache(other).latents_name(0), lambda: np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_sweep_cache_shares_the_data_across_vae_settings(tmp_path):
    from robopolicy.semantics.experiment import _Cache

    cfg = OmegaConf.create({"cache_dir": str(tmp_path), "task": {"a": 1}, "real_env": {}, "data": {}, "transfer": {},
                            "vae": {}, "vae_trainer": {}})
    assert _Cache(cfg).dir == _Cache(OmegaConf.merge(cfg, {"vae_trainer": {"steps": 7}})).dir


def test_sweep_cache_shares_the_data_across_transfer_settings(tmp_path):
    from robopolicy.semantics.experiment import _Cache

    cfg = OmegaConf.create({"cache_dir": str(tmp_path), "task": {"a": 1}, "real_env": {}, "data": {}, "transfer": {"episodes": 20},
                            "vae": {}, "vae_trainer": {}})
    assert _Cache(cfg).dir == _Cache(OmegaConf.merge(cfg, {"transfer": {"episodes": 50}})).dir


def test_sweep_cache_keeps_references_of_other_transfer_settings_apart(tmp_path):
    from robopolicy.semantics.experiment import _Cache

    cfg = OmegaConf.create({"cache_dir": str(tmp_path), "task": {"a": 1}, "real_env": {}, "data": {}, "transfer": {"episodes": 20},
                            "vae": {}, "vae_trainer": {}})
    other = _Cache(OmegaConf.merge(cfg, {"transfer": {"episodes": 50}}))
    _Cache(cfg).record(_Cache(cfg).reference_name, lambda: {"episodes": 20})
    assert other.record(other.reference_name, lambda: {"episodes": 50}) == {"episodes": 50}


def test_pool_predictions_cover_every_stride_th_frame_and_zero_the_rest():
    data, _ = _toy(n_episodes=2, length=5)

    class Fake:
        def predict(self, images, reading=None):
            members = np.stack([np.full((len(images), 2), m + 1.0) for m in range(3)])
            return members.mean(0), members

    preds = active.pool_predictions(Fake(), data, stride=3, n_frames=1)
    assert preds.shape == (3, 10, 2)
    np.testing.assert_array_equal(preds[1, :, 0], [2, 0, 0, 2, 0, 0, 2, 0, 0, 2])
