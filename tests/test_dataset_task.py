"""task=dataset: a tiny image policy and a critic train on an imported LeRobot store with no simulator."""

from __future__ import annotations

import _interop_toys as toys
import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.data.formats import import_dataset
from robopolicy.data.store import EpisodeStore
from robopolicy.envs import dataset_task
from robopolicy.envs.dataset_task import DatasetTask, resolve_task
from robopolicy.errors import CheckpointError, TaskError


def make_dataset_task(store: str, **over) -> DatasetTask:
    """tasks/dataset.yaml's constructor arguments with ``dataset=store`` and ``over`` changed."""
    from robopolicy.defaults import constructor_kwargs, group_config

    return DatasetTask(**constructor_kwargs(group_config("task", "dataset", {"dataset": store, **over})))

TINY = ["policy=bc", "net=mlp", "policy.hidden_dims=[32]", "policy.encoder.rgb_feature_dim=8", "policy.encoder.num_kp=4",
        "task.obs_horizon=2", "task.action_horizon=4", "task.exec_horizon=2", "batch_size=4", "steps=3",
        "val_fraction=0.34", "val_every=3", "ckpt_every=3", "log_every=1", "progress=false", "device=cpu",
        "wandb.mode=disabled", "optim.warmup_steps=1"]


def compose_cfg(name, overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=overrides)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    toys.write_v3(root / "src", lengths=(8, 7, 9), size=64)  # the ResNet encoder needs 64 px
    cfg = yaml.safe_load((CONF_DIR / "import.yaml").read_text())
    import_dataset(root / "src", root / "imported.zarr", "auto", cfg, progress=False)
    return root / "imported.zarr"


def test_image_policy_trains_without_a_simulator_and_loads(store_path, tmp_path, capsys):
    import robopolicy
    from robopolicy.cli.train import train

    run = tmp_path / "run"
    summary = train(compose_cfg("train", ["task=dataset", f"dataset={store_path}", f"run_dir={run}", *TINY]))  # final_eval.episodes=100
    assert summary["step"] == 3
    assert "val/loss" in summary
    assert "final" not in summary
    assert "rollouts skipped" in capsys.readouterr().out
    policy = robopolicy.load(run, device="cpu")
    ep = EpisodeStore.open(store_path).episode(0)
    obs = {k: ep[k][None, :2] for k in ("top", "wrist", "agent_pos")}
    out = policy.sample(obs, n=2)
    assert out.shape == (1, 2, 3, toys.ACTION_DIM)
    assert torch.isfinite(out).all()


def test_spec_comes_from_the_store(store_path):
    task = make_dataset_task(str(store_path))
    assert task.spec == EpisodeStore.open(store_path).spec


def test_make_env_without_simulator_names_the_fix(store_path):
    with pytest.raises(TaskError, match="task.simulator"):
        make_dataset_task(str(store_path)).make_env()


def test_imported_store_picks_the_dataset_task_when_no_task_is_given(store_path, monkeypatch, tmp_path):
    monkeypatch.setattr(dataset_task, "task_chosen_on_command_line", lambda: False)
    cfg = compose_cfg("train", [f"dataset={store_path}", f"run_dir={tmp_path}"])  # default task: metaworld
    task = resolve_task(cfg, store_path, EpisodeStore.open(store_path))
    assert isinstance(task, DatasetTask)
    assert cfg.task.name == "dataset"


def test_store_recording_a_simulator_task_keeps_the_configured_task(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_task, "task_chosen_on_command_line", lambda: False)
    from robopolicy.envs import make_task

    cfg = compose_cfg("train", ["task=planar_push", f"dataset={tmp_path}", f"run_dir={tmp_path}"])
    store = EpisodeStore.create(tmp_path / "s.zarr", make_task(cfg.task).spec, attrs={"task": "planar_push"}, fsync=False)
    task = resolve_task(cfg, tmp_path / "s.zarr", store)
    assert not isinstance(task, DatasetTask)
    assert task.name == "planar_push"


def test_simulator_must_match_the_store(store_path):
    with pytest.raises(CheckpointError):
        make_dataset_task(str(store_path), simulator="planar_push")


def test_unknown_simulator_name(store_path):
    with pytest.raises(TaskError, match="planar_push"):
        make_dataset_task(str(store_path), simulator="no_such_sim")


def test_critic_trains_on_the_dataset_task(store_path, tmp_path):
    from robopolicy.value.train import train_critic

    cfg = compose_cfg("train_critic", ["task=dataset", f"dataset={store_path}", f"run_dir={tmp_path / 'q'}", "steps=2", "batch_size=4",
                                       "val_every=0", "ckpt_every=2", "log_every=1", "progress=false", "device=cpu", "wandb.mode=disabled",
                                       "critic.obs_keys=[agent_pos]", "val_fraction=0.0"])
    summary = train_critic(cfg)
    assert summary["step"] == 2
    assert np.isfinite(summary["train/loss"])


def test_named_simulator_serves_rollouts(tmp_path):
    from robopolicy.envs import make_task

    spec = make_task(compose_cfg("train", ["task=planar_push", "dataset=x", "run_dir=x"]).task).spec
    store = EpisodeStore.create(tmp_path / "pp.zarr", spec, fsync=False)
    T = 3
    store.append_episode({**{k: np.zeros((T, *v.shape), np.float32) for k, v in spec.obs.items()},
                          "action": np.zeros((T, spec.action_dim), np.float32), "reward": np.zeros(T, np.float32),
                          "success": np.zeros(T, bool), "done": np.zeros(T, bool)})
    task = make_dataset_task(str(tmp_path / "pp.zarr"), simulator="planar_push")
    obs, _ = task.make_env().reset(seed=0)
    assert sorted(obs) == sorted(spec.obs)
    assert dataset_task.can_roll_out(task)
