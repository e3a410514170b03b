"""Import/export under one command: robomimic through the same entry, extra keys, file roll-over, kills."""

from __future__ import annotations

import os
import subprocess
import sys

import _interop_toys as toys
import h5py
import numpy as np
import pytest
import yaml

from robopolicy.cli._hydra import CONF_DIR, REPO_ROOT
from robopolicy.data.formats import export_dataset, import_dataset
from robopolicy.data.store import EpisodeStore


@pytest.fixture(scope="module")
def conf():
    return yaml.safe_load((CONF_DIR / "import.yaml").read_text()), yaml.safe_load((CONF_DIR / "export.yaml").read_text())


def test_robomimic_file_imports_through_the_same_entry(conf, tmp_path):
    from test_robomimic_io import LENGTHS, write_robomimic

    write_robomimic(tmp_path / "in.hdf5")
    summary = import_dataset(tmp_path / "in.hdf5", tmp_path / "s.zarr", "auto", conf[0], progress=False)
    assert summary["format"] == "robomimic"
    assert summary["steps"] == sum(LENGTHS.values())


def test_robomimic_export_through_the_same_entry(conf, tmp_path):
    toys.write_v3(tmp_path / "src", lengths=(3, 2), cams={"observation.images.top": "libx264"})
    import_dataset(tmp_path / "src", tmp_path / "s.zarr", "auto", conf[0], progress=False)
    export_dataset(tmp_path / "s.zarr", tmp_path / "out.hdf5", "robomimic", conf[1], progress=False)
    with h5py.File(tmp_path / "out.hdf5") as f:
        assert np.array_equal(f["data/demo_1/actions"][()], toys.lowdim(1, 2)[1])


def test_extra_keys_survive_a_lerobot_round_trip(conf, tmp_path):
    from test_robomimic_io import write_robomimic

    write_robomimic(tmp_path / "in.hdf5")
    store = EpisodeStore.open(import_dataset(tmp_path / "in.hdf5", tmp_path / "s.zarr", "auto", conf[0], progress=False)["path"])
    export_dataset(store.path, tmp_path / "lr", "lerobot", conf[1], progress=False)
    back = EpisodeStore.open(import_dataset(tmp_path / "lr", tmp_path / "b.zarr", "auto", conf[0], progress=False)["path"])
    assert back.get("state_sim").dtype == np.float64
    assert np.array_equal(back.get("state_sim"), store.get("state_sim"))
    assert sorted(back.spec.obs) == sorted(store.spec.obs)


def test_export_rolls_over_to_new_files(conf, tmp_path):
    toys.write_v3(tmp_path / "src", lengths=(3, 4, 2))
    store = EpisodeStore.open(import_dataset(tmp_path / "src", tmp_path / "s.zarr", "auto", conf[0], progress=False)["path"])
    export_dataset(store.path, tmp_path / "lr", "lerobot", {**conf[1], "data_file_mb": 1e-9, "video_file_mb": 1e-9}, progress=False)
    assert len(list((tmp_path / "lr/data/chunk-000").glob("*.parquet"))) == 3
    assert len(list((tmp_path / "lr/videos/observation.images.top/chunk-000").glob("*.mp4"))) == 3
    back = EpisodeStore.open(import_dataset(tmp_path / "lr", tmp_path / "b.zarr", "auto", conf[0], progress=False)["path"])
    assert np.array_equal(back.get("agent_pos"), store.get("agent_pos"))


KILL_AT_SECOND_EPISODE = """
import os, signal, sys, yaml
from robopolicy.data.store import EpisodeStore
from robopolicy.data.formats import import_dataset
real, calls = EpisodeStore.append_episode, []
def append(self, ep):
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    real(self, ep)
EpisodeStore.append_episode = append
import_dataset(sys.argv[1], sys.argv[2], "auto", yaml.safe_load(open(sys.argv[3])), progress=False)
"""


def test_killed_import_leaves_no_store_and_the_next_import_works(conf, tmp_path):
    toys.write_v3(tmp_path / "src", lengths=(3, 2), cams={})
    out = tmp_path / "out.zarr"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILL_AT_SECOND_EPISODE, str(tmp_path / "src"), str(out), str(CONF_DIR / "import.yaml")],
                          env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9
    assert not out.exists()
    import_dataset(tmp_path / "src", out, "auto", conf[0], progress=False)
    assert EpisodeStore.open(out).n_episodes == 2
    assert not (tmp_path / ".out.zarr.importing").exists()
