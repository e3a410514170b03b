"""Bad input to robopolicy-import: one sentence naming the file, exit status 2, nothing left at out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import _interop_toys as toys
import pytest
import yaml

from robopolicy.cli._hydra import CONF_DIR, REPO_ROOT
from robopolicy.data.formats import import_dataset
from robopolicy.errors import DataError


@pytest.fixture
def cfg():
    return yaml.safe_load((CONF_DIR / "import.yaml").read_text())


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith((out.name, f".{out.name}")))


def run_import(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "SVT_LOG": "1"}
    return subprocess.run([sys.executable, "-m", "robopolicy.cli.import_data", *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_unknown_folder_exits_2_with_one_sentence(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    out = tmp_path / "out.zarr"
    proc = run_import(str(tmp_path / "junk"), f"out={out}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "no known dataset format" in lines[0]
    assert leftovers(out) == []


def test_cli_imports_and_prints_a_summary(tmp_path):
    toys.write_v3(tmp_path / "src", lengths=(3, 2), cams={"observation.images.top": "libx264"})
    proc = run_import(str(tmp_path / "src"), f"out={tmp_path / 'out.zarr'}", "progress=false")
    assert proc.returncode == 0, proc.stderr
    assert "2 episodes, 5 steps at 10 fps" in proc.stdout


def expect_failure(cfg, src: Path, out: Path, *words: str) -> None:
    with pytest.raises(DataError) as e:
        import_dataset(src, out, "auto", cfg, progress=False)
    msg = str(e.value)
    assert all(w in msg for w in words), msg
    assert msg.count(". ") == 0
    assert msg.endswith(".")  # one sentence
    assert leftovers(out) == []


def test_missing_feature_column(cfg, tmp_path):
    root = toys.write_v3(tmp_path / "src", lengths=(3, 2), cams={})
    info = json.loads((root / "meta/info.json").read_text())
    info["features"]["observation.effort"] = {"dtype": "float32", "shape": [2], "names": None}
    (root / "meta/info.json").write_text(json.dumps(info))
    expect_failure(cfg, root, tmp_path / "out.zarr", "observation.effort", "file-000.parquet")


def test_missing_action_feature(cfg, tmp_path):
    root = toys.write_v3(tmp_path / "src", lengths=(3,), cams={})
    info = json.loads((root / "meta/info.json").read_text())
    del info["features"]["action"]
    (root / "meta/info.json").write_text(json.dumps(info))
    expect_failure(cfg, root, tmp_path / "out.zarr", "'action'")


def test_truncated_parquet(cfg, tmp_path):
    root = toys.write_v3(tmp_path / "src", lengths=(3, 2), cams={})
    path = root / "data/chunk-000/file-000.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    expect_failure(cfg, root, tmp_path / "out.zarr", "file-000.parquet", "truncated")


def test_truncated_mp4(cfg, tmp_path):
    root = toys.write_v3(tmp_path / "src", lengths=(4, 4), cams={"observation.images.top": "libx264"}, episodes_per_file=2)
    path = root / "videos/observation.images.top/chunk-000/file-000.mp4"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    expect_failure(cfg, root, tmp_path / "out.zarr", "file-000.mp4")


def test_mismatched_episode_length(cfg, tmp_path):
    root = toys.write_v3(tmp_path / "src", lengths=(3, 2), cams={})
    info = json.loads((root / "meta/info.json").read_text())
    import pyarrow as pa
    import pyarrow.parquet as pq

    ep_path = root / "meta/episodes/chunk-000/file-000.parquet"
    rows = pq.read_table(ep_path).to_pylist()
    rows[1]["length"] = 4
    pq.write_table(pa.Table.from_pylist(rows), ep_path)
    info["total_frames"] = 7
    (root / "meta/info.json").write_text(json.dumps(info))
    expect_failure(cfg, root, tmp_path / "out.zarr", "mismatched lengths")


def test_existing_out_is_kept(cfg, tmp_path):
    root = toys.write_v3(tmp_path / "src", lengths=(3,), cams={})
    out = tmp_path / "out.zarr"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(DataError, match="already exists"):
        import_dataset(root, out, "auto", cfg, progress=False)
    assert (out / "mine.txt").read_text() == "keep"


def test_truncated_mp4_with_its_index_first(cfg, tmp_path):
    """Our export writes the mp4 index first (as LeRobot does): the file opens, its frames do not decode."""
    from robopolicy.data.formats import export_dataset

    toys.write_v3(tmp_path / "src", lengths=(20, 20), cams={"observation.images.top": "libx264"})
    import_dataset(tmp_path / "src", tmp_path / "a.zarr", "auto", cfg, progress=False)
    export_cfg = yaml.safe_load((CONF_DIR / "export.yaml").read_text())
    export_dataset(tmp_path / "a.zarr", tmp_path / "exp", "lerobot", {**export_cfg, "codec": "h264"}, progress=False)
    path = tmp_path / "exp/videos/observation.images.top/chunk-000/file-000.mp4"
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    expect_failure(cfg, tmp_path / "exp", tmp_path / "b.zarr", "file-000.mp4")


def test_episode_metadata_without_video_location(cfg, tmp_path):
    import pyarrow.parquet as pq

    root = toys.write_v3(tmp_path / "src", lengths=(3, 2), cams={"observation.images.top": "libx264"})
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["videos/observation.images.top/from_timestamp"]), path)
    expect_failure(cfg, root, tmp_path / "out.zarr", "videos/observation.images.top/from_timestamp", "meta/episodes")


def test_cli_rename_override_with_dotted_feature_names(tmp_path):
    from robopolicy.data.store import EpisodeStore

    toys.write_v3(tmp_path / "src", lengths=(3, 2), cams={"observation.images.top": "libx264"})
    out = tmp_path / "out.zarr"
    proc = run_import(str(tmp_path / "src"), f"out={out}", "rename={observation.state:joints,observation.images.top:cam}", "progress=false")
    assert proc.returncode == 0, proc.stderr
    assert sorted(EpisodeStore.open(out).spec.obs) == ["cam", "joints"]
