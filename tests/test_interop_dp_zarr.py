"""Diffusion Policy zarr v2 replay buffer import."""

from __future__ import annotations

import _interop_toys as toys
import numpy as np
import yaml

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.data.formats import detect_format, import_dataset
from robopolicy.data.store import EpisodeStore


def test_dp_zarr_import(tmp_path):
    cfg = yaml.safe_load((CONF_DIR / "import.yaml").read_text())
    src = toys.write_dp_zarr(tmp_path / "buf.zarr", lengths=(6, 4))
    assert detect_format(src) == "dp_zarr"
    summary = import_dataset(src, tmp_path / "out.zarr", "auto", {**cfg, "fps": 5}, progress=False)
    store = EpisodeStore.open(tmp_path / "out.zarr")
    assert store.episode_ends.tolist() == [6, 10]
    assert store.spec.control_hz == 5.0
    assert store.spec.obs["img"].kind == "rgb"
    assert store.get("img").dtype == np.uint8
    assert np.array_equal(store.episode(1)["img"], toys.frames(1, 0, 4, 16))  # float 0-255 -> uint8, lossless
    assert np.array_equal(store.episode(0)["state"], toys.lowdim(0, 6)[0])
    assert summary["episodes"] == 2


def test_zipped_dp_buffer_imports(tmp_path):
    import zipfile

    cfg = yaml.safe_load((CONF_DIR / "import.yaml").read_text())
    src = toys.write_dp_zarr(tmp_path / "buf.zarr", lengths=(3, 2))
    with zipfile.ZipFile(tmp_path / "buf.zarr.zip", "w") as z:  # the group at the zip's root, as ReplayBuffer.save_to_path writes
        for f in sorted(src.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(src).as_posix())
    import_dataset(tmp_path / "buf.zarr.zip", tmp_path / "out.zarr", "auto", cfg, progress=False)
    assert EpisodeStore.open(tmp_path / "out.zarr").episode_ends.tolist() == [3, 5]
