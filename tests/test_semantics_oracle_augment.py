"""Annotation oracle (counts, budget, noise) and pair augmentation through the simulator."""

import numpy as np
import pytest

from robopolicy.defaults import constructor_kwargs, group_config
from robopolicy.envs import make_task
from robopolicy.semantics.augment import LabelSet, propagate
from robopolicy.semantics.data import collect_real_episodes
from robopolicy.semantics.oracle import AnnotationBudgetError, AnnotationOracle

# The real camera's look without its dynamics gap (conf/semantics/real_env/same_dynamics.yaml), 32 px.
GAP_LOOK = constructor_kwargs(group_config("semantics/real_env", "same_dynamics", {"image_size": 32, "pixel_noise_std": 5.0}))


def test_oracle_counts_and_refuses_past_budget():
    truth = [np.arange(12, dtype=np.float32).reshape(3, 4)]
    oracle = AnnotationOracle(truth, budget=2, noise_std=0.0)
    np.testing.assert_array_equal(oracle.annotate(0, 1), truth[0][1])
    np.testing.assert_array_equal(oracle.annotate(0, 1), truth[0][1])  # a repeat costs again
    assert oracle.requests == 2 and oracle.remaining == 0
    with pytest.raises(AnnotationBudgetError, match="budget of 2"):
        oracle.annotate(0, 0)
    assert oracle.requests == 2


def test_oracle_noise():
    truth = [np.zeros((200, 4), np.float32)]
    oracle = AnnotationOracle(truth, budget=200, noise_std=0.01, rng=np.random.default_rng(0))
    s = np.stack([oracle.annotate(0, t) for t in range(200)])
    assert 0.007 < s.std() < 0.013


@pytest.fixture(scope="module")
def real_data():
    task = make_task(group_config("task", "planar_push", {"max_episode_steps": 40}))
    data, truths = collect_real_episodes(task, GAP_LOOK, episodes=2, seed=0, behaviour_noise=0.3, reach_steps=0)
    return task, data, truths


def test_real_data_hides_semantics(real_data):
    task, data, truths = real_data
    assert data.images[0].shape[1:] == (32, 32, 3) and data.images[0].dtype == np.uint8
    assert len(data.images[0]) == len(data.actions[0]) + 1 == len(truths[0])
    assert data.n_frames == sum(len(t) for t in truths)
    assert not hasattr(data, "semantics")


def test_augmentation_reproduces_true_semantics_exactly(real_data):
    """Equal dynamics and no noise: one annotation labels its whole segment with the true semantics."""
    task, data, truths = real_data
    sim = task.make_env()
    sim.reset(seed=123)
    oracle = AnnotationOracle(truths, budget=2, noise_std=0.0)
    labels = LabelSet(data, 4)
    f = data.frame_id(0, 3)
    ids = labels.add(f, oracle.annotate(0, 3), sim, segment_length=1000)
    assert len(ids) == len(truths[0]) - 3
    np.testing.assert_array_equal(labels.labels[ids], truths[0][3:])
    assert oracle.requests == 1
    # Transition noise makes the labels drift from the truth, growing along the segment.
    noisy = propagate(sim, truths[1][0], data.actions[1], transition_noise_std=0.003, rng=np.random.default_rng(1))
    err = np.abs(noisy - truths[1]).max(1)
    assert err[0] == 0 and err[-5:].mean() > err[1:5].mean() > 0


def test_augmentation_with_dynamics_gap_drifts():
    task = make_task(group_config("task", "planar_push", {"max_episode_steps": 60}))
    gap = dict(GAP_LOOK, mass_scale=2.0, friction_scale=3.0)
    data, truths = collect_real_episodes(task, gap, episodes=1, seed=4, behaviour_noise=0.1, reach_steps=0)
    sim = task.make_env()
    sim.reset(seed=0)
    seq = propagate(sim, truths[0][0], data.actions[0])
    assert np.abs(seq - truths[0]).max() > 1e-3


def test_labelset_keeps_nearest_annotation(real_data):
    task, data, truths = real_data
    sim = task.make_env()
    sim.reset(seed=0)
    labels = LabelSet(data, 4)
    labels.add(data.frame_id(0, 0), truths[0][0] + 0.01, sim, segment_length=10)  # a noisy annotation
    labels.add(data.frame_id(0, 5), truths[0][5], sim, segment_length=1)
    assert labels.age[data.frame_id(0, 5)] == 0 and labels.age[data.frame_id(0, 6)] == 6
    np.testing.assert_array_equal(labels.labels[data.frame_id(0, 5)], truths[0][5])
    assert len(labels.labeled) == 10 and labels.annotated == [0, 5]
