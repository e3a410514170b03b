"""Checkpoint atomicity (a kill during a save), pointer resolution, strict loading, RNG capture."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from robopolicy.errors import CheckpointError
from robopolicy.training import checkpoint as ckpt
from test_trainer import TESTS, ToyModel, assert_same, one_thread, run_toy, toy_cfg, weights  # noqa: F401 (fixture)

KILL_DURING_SAVE = """
import os, signal, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from robopolicy.training import checkpoint
real = checkpoint._fsync_file
def fsync_then_die(path):
    real(path)
    if "step_20" in str(path) and path.name == "train_state.pt":  # half of the step_20 folder is written
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint._fsync_file = fsync_then_die
from test_trainer import run_toy, toy_cfg
run_toy({run_dir!r}, toy_cfg(steps=30, ckpt_every=10, val_every=0))
"""



def test_kill_during_save_leaves_latest_on_a_complete_checkpoint(tmp_path, one_thread):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE.format(tests=str(TESTS), run_dir=str(run))], env=env, timeout=120)
    assert proc.returncode == -9
    root = run / "checkpoints"
    assert json.loads((root / "latest.json").read_text())["name"] == "step_10"
    assert not (root / "step_20").exists() and list(root.glob(".tmp_step_20_*"))  # the half-written folder is hidden
    folder = ckpt.find_checkpoint(run, "last")
    assert folder.name == "step_10" and torch.load(folder / "train_state.pt", weights_only=True)["step"] == 10
    # resuming cleans the leftover and reproduces the uninterrupted run exactly
    run_toy(run, toy_cfg(steps=30, ckpt_every=10, val_every=0))
    run_toy(tmp_path / "ref", toy_cfg(steps=30, ckpt_every=10, val_every=0))
    assert not list(root.glob(".tmp_step_*"))
    assert_same(weights(run, 30), weights(tmp_path / "ref", 30))


def test_find_checkpoint_names_and_errors(tmp_path):
    with pytest.raises(CheckpointError, match="has no checkpoint"):
        ckpt.find_checkpoint(tmp_path, "last")
    run_toy(tmp_path, toy_cfg(steps=20, keep_last=5))
    assert ckpt.find_checkpoint(tmp_path, "last").name == "step_20"
    assert ckpt.find_checkpoint(tmp_path, "step_10").name == "step_10"
    assert ckpt.find_checkpoint(tmp_path, "best").name in {"step_10", "step_20"}
    assert ckpt.find_checkpoint("ignored", str(tmp_path / "checkpoints" / "step_10")).name == "step_10"
    with pytest.raises(CheckpointError, match="step_7.*pick one of"):
        ckpt.find_checkpoint(tmp_path, "step_7")


def test_best_needs_validation_or_evaluation(tmp_path):
    run_toy(tmp_path, toy_cfg(steps=10, val_every=0))
    with pytest.raises(CheckpointError, match="no best checkpoint"):
        ckpt.find_checkpoint(tmp_path, "best")


def test_load_weights_into_mismatched_model_fails_clearly(tmp_path):
    torch.manual_seed(0)
    model = ToyModel()
    path = tmp_path / "m.safetensors"
    save_file(ckpt.state_dict_for_safetensors(model), str(path))
    other = ToyModel()
    ckpt.load_weights(other, path)
    assert torch.equal(other.net[0].weight, model.net[0].weight)
    wider = ToyModel()
    wider.net[4] = torch.nn.Linear(32, 3)
    with pytest.raises(CheckpointError, match=r"does not match the config.*shape of 'net.4.bias' is \(2,\)"):
        ckpt.load_weights(wider, path)
    extra = ToyModel()
    extra.head = torch.nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match=r"missing \['head.bias', 'head.weight'\]"):
        ckpt.load_weights(extra, path)


def test_rng_state_roundtrip_is_weights_only_loadable(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # leaves a cached Gaussian in numpy's legacy state
    state = ckpt.capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), np.random.randn(), random.random())
    ckpt.restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), np.random.randn(), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
    assert expected[2] == got[2] and expected[3] == got[3]
