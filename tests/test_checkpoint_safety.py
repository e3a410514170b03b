"""A checkpoint is data: allowlisted targets only, checksummed weights, pointers that stay in the run,
finite weights. Each test builds a tiny run, damages it the way an attacker or a bad disk would,
and checks that loading refuses it with one CheckpointError sentence before anything runs."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from robopolicy.api import load_run
from robopolicy.errors import CheckpointError
from robopolicy.training import checkpoint as ckpt
from robopolicy.utils.safe_instantiate import CHECKPOINT_TARGETS, check_targets


@pytest.fixture
def run(tmp_path):
    from _eval_toys import make_untrained_run

    make_untrained_run(tmp_path / "run", "multimodal", step=7, hidden=(8, 8))
    return tmp_path / "run"


def _folder(run: Path) -> Path:
    return run / "checkpoints" / "step_7"


def _one_sentence(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


class _TouchOnUnpickle:
    """Unpickling this creates ``path``: the stand-in for code a shared pickle would run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_nested_torch_load_target_is_refused_before_anything_runs(run, tmp_path):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_TouchOnUnpickle(marker)))
    cfg_path = _folder(run) / "config.yaml"
    cfg = OmegaConf.load(cfg_path)
    cfg.net.extra = {"_target_": "torch.load", "f": str(evil), "weights_only": False}  # nested: the policy builds net
    cfg_path.write_text(OmegaConf.to_yaml(cfg))
    with pytest.raises(CheckpointError) as e:
        load_run(run, device="cpu")
    assert "'torch.load' at net.extra._target_" in _one_sentence(e)
    assert not marker.exists()


def test_target_assembled_by_interpolation_is_refused(run):
    cfg_path = _folder(run) / "config.yaml"
    cfg = OmegaConf.load(cfg_path)
    cfg.evil = "os.sys" + "tem"
    cfg.policy.encoder.hook = {"_target_": "${evil}", "_args_": ["true"]}
    cfg_path.write_text(OmegaConf.to_yaml(cfg, resolve=False))
    with pytest.raises(CheckpointError, match=r"'os.system' at policy.encoder.hook._target_"):
        load_run(run, device="cpu")


def test_allowlist_accepts_robopolicy_classes_and_extra_ones():
    cfg = {"policy": {"_target_": CHECKPOINT_TARGETS[0], "net": [{"_target_": "my.pkg.Net"}]}}
    with pytest.raises(CheckpointError, match=r"policy.net\[0\]._target_"):
        check_targets(cfg)
    assert check_targets(cfg, extra_targets=["my.pkg.Net"]) == cfg


def test_flipped_byte_in_weights_is_refused(run):
    path = _folder(run) / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # inside the last tensor: the file still parses, only the checksum can tell
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as e:
        load_run(run, device="cpu")
    assert "sha256" in _one_sentence(e)


def test_truncated_weights_are_refused(run):
    path = _folder(run) / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or altered"):
        load_run(run, device="cpu")


def test_meta_records_a_checksum_of_every_file(run):
    meta = json.loads((_folder(run) / "meta.json").read_text())
    assert set(meta["sha256"]) == {"model.safetensors", "config.yaml", "spec.json"}
    assert meta["sha256"]["model.safetensors"] == ckpt.file_sha256(_folder(run) / "model.safetensors")


@pytest.mark.parametrize("name", ["../../etc", "/etc", "step_7/../../..", "step_7/../step_7"])
def test_latest_json_naming_anything_but_a_step_folder_is_refused(run, name):
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"name": name, "step": 7}))
    with pytest.raises(CheckpointError, match="does not name a step_<N> folder"):
        load_run(run, device="cpu")


def test_step_folder_symlinked_out_of_the_run_is_refused(run, tmp_path):
    outside = tmp_path / "elsewhere"
    os.replace(_folder(run), outside)
    os.symlink(outside, _folder(run))
    with pytest.raises(CheckpointError, match="points outside"):
        load_run(run, device="cpu")


def test_weights_file_symlinked_out_of_its_folder_is_refused(run, tmp_path):
    path = _folder(run) / "model.safetensors"
    outside = tmp_path / "other.safetensors"
    os.replace(path, outside)
    os.symlink(outside, path)
    with pytest.raises(CheckpointError, match="link to a file outside"):
        load_run(run, device="cpu")


def test_nan_weights_are_refused_at_load(run):
    folder = _folder(run)
    state = ckpt.read_weights(folder / "model.safetensors")
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key][0] = float("nan")
    files = {n: (folder / n).read_text() for n in ("config.yaml",)}
    files["spec.json"] = json.loads((folder / "spec.json").read_text())
    files["meta.json"] = {"step": 8, "metrics": {}, "ema": False}
    ckpt.write_checkpoint(run / "checkpoints", 8, {"model.safetensors": state, **files})  # a valid checksum of bad weights
    with pytest.raises(CheckpointError) as e:
        load_run(run, checkpoint="step_8", device="cpu")
    assert f"{key!r}" in _one_sentence(e)
    assert "NaN or inf" in str(e.value)


def test_checkpoint_without_checksums_loads_with_a_warning(run):
    meta_path = _folder(run) / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["sha256"]
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="no recorded checksum"):
        policy = load_run(run, device="cpu").policy
    assert isinstance(policy, torch.nn.Module)


def test_altered_train_state_is_refused_on_resume(tmp_path):
    from test_trainer import run_toy, toy_cfg

    run_toy(tmp_path, toy_cfg(steps=10, ckpt_every=5, val_every=0))
    path = tmp_path / "checkpoints" / "step_10" / "train_state.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="train_state.pt"):
        run_toy(tmp_path, toy_cfg(steps=20, ckpt_every=5, val_every=0))
