"""robopolicy-train end to end on a tiny store, resume, robopolicy.load, and the clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.cli.train import train
from robopolicy.data import EpisodeStore
from robopolicy.envs import make_task
from robopolicy.errors import CheckpointError, DataError

TINY = ["task=multimodal", "policy=beso", "net=mlp", "net.hidden_dims=[32,32]", "batch_size=8", "steps=6",
        "val_fraction=0.25", "val_every=3", "ckpt_every=3", "log_every=2", "progress=false", "device=cpu",
        "wandb.mode=disabled", "optim.warmup_steps=2", "final_eval.episodes=0", "task.max_episode_steps=20"]


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def make_store(path, spec, episodes=4, T=30, seed=0):
    """A store of random episodes in the task's spec (training only needs the shapes)."""
    rng = np.random.default_rng(seed)
    store = EpisodeStore.create(path, spec, fsync=False)
    for _ in range(episodes):
        ep = {k: rng.normal(size=(T, *v.shape)).astype(np.float32) for k, v in spec.obs.items()}
        ep["action"] = rng.uniform(-1, 1, size=(T, spec.action_dim)).astype(np.float32)
        ep.update(reward=np.zeros(T, np.float32), success=np.zeros(T, bool), done=np.zeros(T, bool))
        store.append_episode(ep)
    return path


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    spec = make_task(compose_cfg(["task=multimodal", "dataset=x", "run_dir=x"]).task).spec
    return make_store(tmp_path_factory.mktemp("data") / "mm.zarr", spec)


def test_train_evaluate_resume_and_load(tmp_path, store_path):
    import robopolicy.api as api

    run = tmp_path / "run"
    cfg = compose_cfg(TINY + [f"dataset={store_path}", f"run_dir={run}", "eval.every=3", "eval.episodes=2"])
    summary = train(cfg)
    assert summary["step"] == 6 and summary["eval/n_evals"] == 2
    periodic = [r["eval/success_rate"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "eval/success_rate" in r]
    assert len(periodic) == 2
    assert summary["eval/success_rate_max"] == max(periodic)
    assert json.loads((run / "summary.json").read_text())["eval/n_evals"] == 2
    folder = run / "checkpoints" / "step_6"
    assert {"model.safetensors", "raw.safetensors", "config.yaml", "spec.json", "train_state.pt", "meta.json"} <= {p.name for p in folder.iterdir()}
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["task"] == "multimodal" and meta["episodes"] == {"train": 3, "val": 1}

    # resume: the same run_dir with more steps continues from step 6
    summary = train(compose_cfg(TINY + [f"dataset={store_path}", f"run_dir={run}", "steps=9", "eval.every=3", "eval.episodes=2"]))
    assert summary["step"] == 9 and summary["eval/n_evals"] == 3
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 9

    policy = api.load(run, device="cpu", overrides=["policy.sampler.steps=1"])
    assert not policy.training and policy.sampler_cfg["steps"] == 1
    ema = {k: v for k, v in policy.state_dict().items()}
    from safetensors.torch import load_file

    on_disk = load_file(str(run / "checkpoints" / "step_9" / "model.safetensors"))
    assert all(torch.equal(ema[k], on_disk[k]) for k in on_disk)  # weights and normalizer statistics
    obs = {"state": np.zeros((3, policy.obs_horizon, 6), np.float32)}
    out = policy.sample(obs, n=2)
    assert out.shape == (3, 2, policy.action_horizon - policy.obs_horizon + 1, 2) and torch.isfinite(out).all()
    assert api.load(run, checkpoint="step_6", device="cpu", overrides={"policy.sampler.steps": 2}).sampler_cfg["steps"] == 2

    # a checkpoint loaded into a different architecture fails with one clear sentence
    cfg_path = run / "checkpoints" / "step_9" / "config.yaml"
    changed = OmegaConf.load(cfg_path)
    changed.net.hidden_dims = [16, 16]
    cfg_path.write_text(OmegaConf.to_yaml(changed))
    with pytest.raises(CheckpointError, match="does not match the config"):
        api.load(run, device="cpu")
    with pytest.raises(CheckpointError, match="has no checkpoint"):
        api.load(tmp_path / "empty", device="cpu")


def test_dataset_that_does_not_match_the_task_is_refused(tmp_path, store_path):
    spec = make_task(compose_cfg(["task=multimodal", "dataset=x", "run_dir=x"]).task).spec
    wrong = make_store(tmp_path / "wrong.zarr", replace(spec, action_dim=3, action_low=(-1.0,) * 3, action_high=(1.0,) * 3), episodes=2)
    with pytest.raises(DataError, match="3-dimensional actions but the task has 2"):
        train(compose_cfg(TINY + [f"dataset={wrong}", f"run_dir={tmp_path / 'r'}"]))
    with pytest.raises(DataError, match="does not exist"):
        train(compose_cfg(TINY + [f"dataset={tmp_path / 'nope.zarr'}", f"run_dir={tmp_path / 'r'}"]))
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_cli_entry_point(tmp_path, store_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "robopolicy.cli.train"]
    proc = subprocess.run(cmd + TINY + [f"dataset={store_path}"], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "error: run_dir is required; add run_dir=runs/<name>" in proc.stderr
    run = tmp_path / "runs" / "tiny"
    proc = subprocess.run(cmd + TINY + [f"dataset={store_path}", "run_dir=runs/tiny", "steps=3"], env=env, capture_output=True,
                          text=True, cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "steps" in proc.stdout and "3/3" in proc.stdout
    assert (run / ".hydra" / "config.yaml").is_file() and (run / "checkpoints" / "latest.json").is_file()
    proc = subprocess.run(cmd + ["policy=nope", "run_dir=x", "dataset=y"], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "Unknown policy 'nope'" in proc.stderr
