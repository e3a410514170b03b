"""Shapes alike, tasks different: a reach-v3 store is not push-v3 data, a critic is trained for the
task given, and a run resumes only on the dataset it started with (each unless explicitly allowed)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hydra import compose, initialize_config_dir
from test_train_cli import TINY, make_store

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.cli.train import train
from robopolicy.envs import make_task
from robopolicy.errors import DataError

MW = ["task=metaworld", "task.env_name=push-v3", "policy=beso", "net=mlp", "net.hidden_dims=[16,16]", "batch_size=8",
      "steps=2", "val_fraction=0.0", "val_every=0", "ckpt_every=2", "progress=false", "device=cpu", "wandb.mode=disabled",
      "optim.warmup_steps=1", "final_eval.episodes=0"]


def _compose(name, overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=overrides)


@pytest.fixture(scope="module")
def reach_store(tmp_path_factory):
    push = make_task(_compose("train", MW + ["dataset=x", "run_dir=x"]).task).spec
    reach = dataclasses.replace(push, name="reach-v3")  # the same 39-d state and 4-d action
    return make_store(tmp_path_factory.mktemp("data") / "reach.zarr", reach, episodes=2, T=20)


def test_reach_store_trained_as_push_is_refused(reach_store, tmp_path):
    with pytest.raises(DataError) as e:
        train(_compose("train", MW + [f"dataset={reach_store}", f"run_dir={tmp_path / 'run'}"]))
    msg = str(e.value)
    assert "collected on task 'reach-v3'" in msg
    assert "'push-v3'" in msg
    assert "allow_task_mismatch=true" in msg
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_task_mismatch_is_trained_when_allowed(reach_store, tmp_path):
    with pytest.warns(UserWarning, match="allow_task_mismatch=true"):
        summary = train(_compose("train", MW + [f"dataset={reach_store}", f"run_dir={tmp_path / 'run'}", "allow_task_mismatch=true"]))
    assert summary["step"] == 2


def test_critic_trainer_checks_the_task_given(tmp_path):
    from _value_toys import make_store as make_toy_store

    from robopolicy.value.train import train_critic

    store = make_toy_store(tmp_path / "toy.zarr", n_episodes=6)  # recorded task "toy"
    over = [f"dataset={store.path}", f"run_dir={tmp_path / 'q'}", "task=multimodal", "steps=2", "batch_size=8",
            "wandb.mode=disabled", "progress=false", "device=cpu", "critic.hidden_dims=[8,8]", "val_fraction=0.0"]
    with pytest.raises(DataError, match="robopolicy-train-critic was given task 'multimodal'"):
        train_critic(_compose("train_critic", over))


@pytest.fixture
def two_stores(tmp_path):
    spec = make_task(_compose("train", TINY + ["dataset=x", "run_dir=x"]).task).spec
    return make_store(tmp_path / "a.zarr", spec, seed=0), make_store(tmp_path / "b.zarr", spec, seed=1)


def test_resume_with_another_dataset_is_refused(two_stores, tmp_path):
    a, b = two_stores
    run = tmp_path / "run"
    train(_compose("train", TINY + [f"dataset={a}", f"run_dir={run}"]))
    with pytest.raises(DataError) as e:
        train(_compose("train", TINY + [f"dataset={b}", f"run_dir={run}", "steps=9"]))
    assert "allow_dataset_change=true" in str(e.value)
    assert str(b) in str(e.value)
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 6


def test_resume_with_another_dataset_when_allowed(two_stores, tmp_path):
    a, b = two_stores
    run = tmp_path / "run"
    train(_compose("train", TINY + [f"dataset={a}", f"run_dir={run}"]))
    summary = train(_compose("train", TINY + [f"dataset={b}", f"run_dir={run}", "steps=9", "allow_dataset_change=true"]))
    assert summary["step"] == 9
