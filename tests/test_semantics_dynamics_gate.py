"""Pair augmentation under unknown object dynamics (robopolicy/semantics/dynamics.py), on planar push."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from robopolicy.defaults import group_config
from robopolicy.envs import make_task
from robopolicy.envs.planar_push import PUCK_RADIUS, PUSHER_RADIUS
from robopolicy.errors import ConfigError
from robopolicy.semantics.augment import LabelSet, propagate
from robopolicy.semantics.data import RealEpisodes
from robopolicy.semantics.dynamics import DynamicsGate, check_ranges
from robopolicy.semantics.tasks import semantics_task

SPREAD = np.full(4, 1e-4, np.float32)  # 0.1 mm on every coordinate


@pytest.fixture()
def sem_sim():
    sem = semantics_task(make_task(group_config("task", "planar_push", {"max_episode_steps": 40})))
    sim = sem.make_sim()
    sim.reset(seed=0)
    yield sem, sim
    sim.close()


def _gate(sem, sim, samples=4):
    return DynamicsGate(sem.object_dynamics(sim, {}), samples, [0.5, 2.0], [0.5, 2.0], SPREAD, seed=0)


def _segment(toward_puck: bool):
    """A state with the pusher just left of the puck and 8 actions pushing right (into it) or left (away)."""
    s0 = np.array([0.0, 0.0, PUSHER_RADIUS + PUCK_RADIUS + 0.005, 0.0], np.float32)
    return s0, np.tile(np.array([1.0 if toward_puck else -1.0, 0.0], np.float32), (8, 1))


def _kept(sem, sim, toward_puck):
    s0, acts = _segment(toward_puck)
    nominal = propagate(sim, s0, acts)
    return _gate(sem, sim).kept(0, nominal, lambda: propagate(sim, s0, acts)), len(nominal)


def test_gate_keeps_a_segment_the_object_takes_no_part_in(sem_sim):
    kept, n = _kept(*sem_sim, toward_puck=False)
    assert kept == n


def test_gate_ends_a_push_where_the_object_dynamics_start_to_matter(sem_sim):
    kept, n = _kept(*sem_sim, toward_puck=True)
    assert 1 <= kept < n


def test_gate_restores_the_simulator_dynamics(sem_sim):
    sem, sim = sem_sim
    model = sim.unwrapped.model
    before = (model.body_mass.copy(), model.dof_frictionloss.copy())
    _kept(sem, sim, toward_puck=True)
    np.testing.assert_array_equal(model.body_mass, before[0])
    np.testing.assert_array_equal(model.dof_frictionloss, before[1])


def test_gate_draws_depend_on_the_annotated_frame_only(sem_sim):
    sem, sim = sem_sim
    gate = _gate(sem, sim, samples=6)
    np.testing.assert_array_equal(gate.draws(5), _gate(sem, sim, samples=6).draws(5))
    assert not np.array_equal(gate.draws(5), gate.draws(6))


def test_gate_draws_each_scale_from_its_own_range(sem_sim):
    sem, sim = sem_sim
    gate = DynamicsGate(sem.object_dynamics(sim, {}), 3, [1.5, 1.5], [0.7, 0.7], SPREAD, seed=0)
    np.testing.assert_allclose(gate.draws(0), [[1.5, 0.7]] * 3, rtol=1e-12)


def test_labelset_with_gate_leaves_the_uncertain_frames_unlabelled(sem_sim):
    sem, sim = sem_sim
    s0, acts = _segment(toward_puck=True)
    truth = propagate(sim, s0, acts)
    data = RealEpisodes([np.zeros((len(truth), 8, 8, 3), np.uint8)], [acts])
    labels = LabelSet(data, 4)
    ids = labels.add(0, s0, sim, segment_length=len(truth), gate=_gate(sem, sim))
    kept, _ = _kept(sem, sim, toward_puck=True)
    np.testing.assert_array_equal(ids, np.arange(kept))
    assert (labels.age[kept:] == -1).all()


@pytest.mark.parametrize("mass, friction, key", [([2.0, 1.0], [0.5, 2.0], "mass_range"), ([0.5, 2.0], [0.0, 1.0], "friction_range"),
                                                 ([0.5], [0.5, 2.0], "mass_range")])
def test_bad_ranges_are_named(mass, friction, key):
    with pytest.raises(ConfigError, match=f"augment_dynamics.{key}"):
        check_ranges(mass, friction)


def test_active_run_refuses_a_bad_range_before_collecting(tmp_path):
    from hydra import compose, initialize_config_dir

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.semantics.experiment import check_active_setting

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics", overrides=[f"run_dir={tmp_path}", "augment_dynamics.samples=2",
                                              "augment_dynamics.mass_range=[3.0,1.0]"])
    with pytest.raises(ConfigError, match="augment_dynamics.mass_range"):
        check_active_setting(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))
    assert not any(tmp_path.iterdir())
