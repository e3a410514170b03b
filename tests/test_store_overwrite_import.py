"""Dataset import (DP zarr, LeRobot) with overwrite=true deletes only an existing store, never another folder."""

from __future__ import annotations

import _interop_toys as toys
import pytest
import yaml

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.data.formats import import_dataset
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError


def _cfg():
    return {**yaml.safe_load((CONF_DIR / "import.yaml").read_text()), "fps": 5}


def test_import_overwrite_refuses_a_folder_that_is_not_a_store(tmp_path):
    src = toys.write_dp_zarr(tmp_path / "buf.zarr", lengths=(6, 4))
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="is not a zarr store, so it will not be overwritten"):
        import_dataset(src, target, "auto", _cfg(), overwrite=True, progress=False)
    assert (target / "notes.txt").read_text() == "keep me"


def test_import_overwrite_replaces_a_store(tmp_path):
    src = toys.write_dp_zarr(tmp_path / "buf.zarr", lengths=(6, 4))
    import_dataset(src, tmp_path / "out.zarr", "auto", _cfg(), progress=False)
    with EpisodeStore.open(tmp_path / "out.zarr", mode="a"):  # a writer holds it: refused
        with pytest.raises(DataError, match="being written"):
            import_dataset(src, tmp_path / "out.zarr", "auto", _cfg(), overwrite=True, progress=False)
    import_dataset(src, tmp_path / "out.zarr", "auto", _cfg(), overwrite=True, progress=False)
    assert EpisodeStore.open(tmp_path / "out.zarr").episode_ends.tolist() == [6, 10]
