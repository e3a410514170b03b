"""Noise robustness knobs: annotation noise (the oracle) and transition noise (pair augmentation), as fractions of range.

A toy simulator (``_ShiftSim``: the state's first dimension moves by the action) makes the
augmented labels exact, so noise 0 must reproduce the truth bit for bit and noise > 0 must show
the configured spread. The statistical checks use a fixed seed and tolerances of about 4-5
standard errors, so they fail on a wrong scale (a factor 2 or a scalar where a range is due).
"""

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.errors import ConfigError
from robopolicy.semantics import active
from robopolicy.semantics.augment import LabelSet, propagate
from robopolicy.semantics.data import RealEpisodes
from robopolicy.semantics.noise import range_std
from robopolicy.semantics.oracle import AnnotationOracle
from robopolicy.semantics.strategies import RandomEpisodes
from test_semantics_active_loop import _cfg as _loop_cfg

LOW, HIGH = [0.0, -2.0, 0.0], [1.0, 2.0, 10.0]  # ranges 1, 4, 10: a per-dimension scale is visible


class _ShiftSim:
    """A simulator whose semantics (D,) move by the action: T(s, a) = s + [a_0, 0, ...]."""

    def __init__(self):
        self.unwrapped, self.s = self, None

    def set_semantics(self, s):
        self.s = np.array(s, np.float32)

    def step(self, a):
        self.s[0] += float(np.asarray(a).reshape(-1)[0])

    def get_semantics(self):
        return self.s.copy()


def _toy(n_episodes=3, length=10, size=16, seed=0):
    """Episodes whose truths follow _ShiftSim's dynamics exactly (first dimension = cumulative actions)."""
    rng = np.random.default_rng(seed)
    images, actions, truths = [], [], []
    for _ in range(n_episodes):
        a = rng.uniform(-0.1, 0.1, (length - 1, 1)).astype(np.float32)
        x = np.concatenate([[0.0], np.cumsum(a[:, 0])]).astype(np.float32)
        truth = np.stack([x, np.full_like(x, 0.5), np.zeros_like(x), np.zeros_like(x)], 1)
        img = np.zeros((length, size, size, 3), np.uint8)
        for t in range(length):
            img[t, :, t % size] = 255
        images.append(img)
        actions.append(a)
        truths.append(truth)
    return RealEpisodes(images, actions), truths


def _noisy_cfg(transition_noise):
    cfg = _loop_cfg()
    cfg.segment_length, cfg.per_round, cfg.transition_noise = 4, 2, transition_noise
    return cfg


def test_range_std_is_the_fraction_of_each_dimensions_range():
    np.testing.assert_allclose(range_std(0.05, LOW, HIGH, "semantics.annotation_noise"), [0.05, 0.2, 0.5], rtol=1e-6)


@pytest.mark.parametrize("key", ["semantics.annotation_noise", "semantics.transition_noise"])
def test_a_negative_noise_level_is_refused_naming_its_key(key):
    with pytest.raises(ConfigError, match=rf"^{key}=-0.1 is not a noise level; set {key} to 0"):
        range_std(-0.1, LOW, HIGH, key)


def test_the_composed_default_config_has_no_noise():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics")
    assert (cfg.annotation_noise, cfg.transition_noise) == (0.0, 0.0)


def test_make_oracle_scales_annotation_noise_by_the_tasks_range():
    from robopolicy.semantics.experiment import _task, _with_bounds, make_oracle

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics", overrides=["annotation_noise=0.1"])
    cfg = _with_bounds(cfg, _task(cfg))  # planar push: every dimension spans [-0.3, 0.3] m
    oracle = make_oracle(cfg, [np.zeros((3, 4), np.float32)])
    np.testing.assert_allclose(oracle.noise_std, [0.06] * 4, rtol=1e-6)


def test_an_oracle_without_noise_returns_the_truth_and_draws_nothing():
    truth = [np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)]
    rng = np.random.default_rng(7)
    before = rng.bit_generator.state
    oracle = AnnotationOracle(truth, budget=50, noise_std=range_std(0.0, LOW, HIGH, "k"), rng=rng)
    labels = np.stack([oracle.annotate(0, t) for t in range(50)])
    np.testing.assert_array_equal(labels, truth[0])
    assert rng.bit_generator.state == before


def test_annotation_noise_has_the_configured_spread_in_each_dimension():
    n = 4000
    truth = [np.zeros((n, 3), np.float32)]
    oracle = AnnotationOracle(truth, budget=n, noise_std=range_std(0.05, LOW, HIGH, "k"), rng=np.random.default_rng(0))
    labels = np.stack([oracle.annotate(0, t) for t in range(n)])
    # The sample std of 4000 Gaussian draws is within 1.1 % of sigma (1 s.e.); 5 % is ~4.5 s.e.
    np.testing.assert_allclose(labels.std(0), [0.05, 0.2, 0.5], rtol=0.05)


def test_annotation_noise_is_centred_on_the_truth():
    n = 4000
    truth = [np.full((n, 3), 3.0, np.float32)]
    oracle = AnnotationOracle(truth, budget=n, noise_std=range_std(0.05, LOW, HIGH, "k"), rng=np.random.default_rng(1))
    labels = np.stack([oracle.annotate(0, t) for t in range(n)])
    # 4.5 standard errors of the mean per dimension.
    np.testing.assert_allclose(labels.mean(0), [3.0] * 3, atol=4.5 * 0.5 / np.sqrt(n))


def test_an_oracle_refuses_a_negative_noise():
    with pytest.raises(ConfigError, match="annotation noise standard deviation .* must be finite and not negative"):
        AnnotationOracle([np.zeros((2, 3), np.float32)], budget=1, noise_std=[0.1, -0.1, 0.1])


def test_annotation_noise_without_a_generator_is_refused():
    with pytest.raises(ConfigError, match="Annotation noise needs a generator"):
        AnnotationOracle([np.zeros((2, 3), np.float32)], budget=1, noise_std=0.1)


def test_zero_transition_noise_gives_the_noise_free_pairs_and_draws_nothing():
    sim, s0, acts = _ShiftSim(), np.array([0.2, 0.1, 0.0], np.float32), np.full((6, 1), 0.05, np.float32)
    rng = np.random.default_rng(3)
    before = rng.bit_generator.state
    noisy = propagate(sim, s0, acts, range_std(0.0, LOW, HIGH, "k"), rng)
    np.testing.assert_array_equal(noisy, propagate(sim, s0, acts))
    assert rng.bit_generator.state == before


def test_transition_noise_has_the_configured_spread_per_simulated_step():
    sim, steps = _ShiftSim(), 4000
    seq = propagate(sim, np.zeros(3, np.float32), np.zeros((steps, 1), np.float32), range_std(0.01, LOW, HIGH, "k"),
                    np.random.default_rng(0))
    # Zero actions: each step's change is exactly the noise added after the previous state.
    np.testing.assert_allclose(np.diff(seq, axis=0).std(0), [0.01, 0.04, 0.1], rtol=0.05)


def test_transition_noise_accumulates_along_the_segment():
    """The noisy state is what the next step starts from: the error after k steps has std sigma * sqrt(k)."""
    sim, reps, k = _ShiftSim(), 2000, 9
    rng = np.random.default_rng(2)
    ends = np.stack([propagate(sim, np.zeros(3, np.float32), np.zeros((k, 1), np.float32), np.float32(0.01), rng)[-1]
                     for _ in range(reps)])
    np.testing.assert_allclose(ends.std(0), [0.01 * np.sqrt(k)] * 3, rtol=0.08)


def test_transition_noise_without_a_generator_is_refused():
    with pytest.raises(ConfigError, match="Transition noise needs a generator"):
        propagate(_ShiftSim(), np.zeros(3, np.float32), np.zeros((2, 1), np.float32), 0.01, None)


def test_transition_noise_of_labelset_is_refused_when_negative():
    data, truths = _toy()
    with pytest.raises(ConfigError, match="transition noise standard deviation"):
        LabelSet(data, 4).add(0, truths[0][0], _ShiftSim(), 4, -0.01, np.random.default_rng(0))


def test_the_loop_without_noise_labels_every_segment_with_the_truth(tmp_path):
    data, truths = _toy()
    oracle = AnnotationOracle(truths, budget=4, noise_std=0.0)
    out = {}
    active.run_active(RandomEpisodes(), data, oracle, _ShiftSim(), _noisy_cfg(0.0), tmp_path, seed=0,
                      on_round=lambda m, lab, a: out.update(labels=lab.labels.copy(), ids=lab.labeled.copy()) or {})
    np.testing.assert_array_equal(out["labels"][out["ids"]], np.concatenate(truths)[out["ids"]])


def _run(tmp_path, noise, name, on_round=None):
    data, truths = _toy()
    got = {}

    def record(m, lab, a):
        got.update(annotated=list(lab.annotated), labels=lab.labels.copy(), ids=lab.labeled.copy())
        return on_round(m, lab, a) if on_round else {}

    active.run_active(RandomEpisodes(), data, AnnotationOracle(truths, budget=4, noise_std=0.0), _ShiftSim(), _noisy_cfg(noise),
                      tmp_path / name, seed=5, on_round=record)
    return got, np.concatenate(truths)


def test_transition_noise_changes_the_labels_not_the_picks(tmp_path):
    clean, truth = _run(tmp_path, 0.0, "clean")
    noisy, _ = _run(tmp_path, 0.02, "noisy")
    augmented = noisy["ids"][~np.isin(noisy["ids"], noisy["annotated"])]
    assert np.abs(noisy["labels"][augmented] - truth[augmented]).min() > 0  # premise: the noise is on
    assert noisy["annotated"] == clean["annotated"]


class _Stop(Exception):
    pass


def test_a_stopped_run_with_transition_noise_continues_to_the_same_labels(tmp_path):
    full, _ = _run(tmp_path, 0.02, "full")

    def stop_after_round_0(m, lab, a):
        if a > 2:
            raise _Stop
        return {}

    with pytest.raises(_Stop):
        _run(tmp_path, 0.02, "part", on_round=stop_after_round_0)
    again, _ = _run(tmp_path, 0.02, "part")
    np.testing.assert_array_equal(again["labels"], full["labels"])
