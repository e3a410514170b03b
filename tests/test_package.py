"""The package carries its configs, tasks and assets: a non-editable wheel runs from any folder.

The wheel test builds from a copy of the source (nothing written into the checkout), installs it
with ``pip install --no-deps --target`` and runs commands with only that folder on PYTHONPATH,
from an unrelated working directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from robopolicy import resources

SOURCE = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl"}
ENV.pop("ROBOPOLICY_CONFIG_DIR", None)


def test_checkout_resources_point_at_the_top_level_folders():
    assert (resources.conf_dir() / "collect.yaml").is_file()
    assert resources.conf_dir() == SOURCE / "conf"


def test_task_group_is_found():
    assert (resources.task_dir() / "multimodal.yaml").is_file()


def test_asset_path_names_a_scene():
    assert "<mujoco" in resources.asset_path("planar_push.xml").read_text()


def test_relative_config_path_resolves_under_the_data_root():
    assert resources.data_path("assets/multimodal.xml") == resources.assets_dir() / "multimodal.xml"


def _user_dir(root: Path) -> Path:
    """A user's config folder: a robot (sim with a marker value) and a task (multimodal, 7 steps)."""
    (root / "robot").mkdir(parents=True)
    (root / "task").mkdir()
    (root / "robot" / "myarm.yaml").write_text("_target_: robopolicy.runtime.sim_robot.make_sim_robot\n"
                                               "obs_latency_s: 0.0123\nseed: 0\n")
    (root / "task" / "mytask.yaml").write_text("defaults:\n  - multimodal\n  - _self_\nname: mytask\nmax_episode_steps: 7\n")
    return root


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of the source, installed into a plain folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in ("robopolicy", "conf", "tasks", "assets"):
        shutil.copytree(SOURCE / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(SOURCE / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)], check=True, env=ENV, cwd=tmp, timeout=300)
    wheel = next((tmp / "dist").glob("robopolicy-*.whl"))
    subprocess.run(pip + ["install", "--no-deps", "--target", str(tmp / "site"), str(wheel)], check=True, env=ENV, cwd=tmp, timeout=300)
    return tmp / "site"


def _run(site: Path, cwd: Path, args: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env={**ENV, "PYTHONPATH": str(site), **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_wheel_carries_configs_without_the_link(installed):
    conf = installed / "robopolicy" / "conf"
    assert (conf / "task" / "multimodal.yaml").is_file()
    assert not (conf / "task").is_symlink()


@pytest.mark.slow
def test_installed_wheel_collects_from_another_folder(installed, tmp_path):
    code = ("import robopolicy, robopolicy.resources as r, sys; print(robopolicy.__file__); print(r.asset_path('multimodal.xml')); "
            "sys.argv=['robopolicy-collect','task=multimodal','episodes=1','out=demo.zarr','progress=false']; "
            "from robopolicy.cli.collect import main; main()")
    proc = _run(installed, tmp_path, ["-c", code])
    assert proc.returncode == 0, proc.stderr[-2000:]
    module, asset = proc.stdout.splitlines()[:2]
    assert (Path(module).parent.parent, Path(asset).parent) == (installed, installed / "robopolicy" / "assets")
    assert (tmp_path / "demo.zarr").is_dir()


@pytest.mark.slow
def test_installed_wheel_uses_a_user_config_folder(installed, tmp_path):
    user = _user_dir(tmp_path / "mine")
    proc = _run(installed, tmp_path, ["-m", "robopolicy.cli.collect", "task=mytask", "episodes=1", "out=mine.zarr", "progress=false",
                                      "stop_after_success=null"], ROBOPOLICY_CONFIG_DIR=str(user))
    assert proc.returncode == 0, proc.stderr[-2000:]
    from robopolicy.data import EpisodeStore

    assert EpisodeStore.open(tmp_path / "mine.zarr").n_steps == 7  # the user's task: max_episode_steps 7


@pytest.mark.slow
def test_installed_wheel_composes_a_user_robot(installed, tmp_path):
    user = _user_dir(tmp_path / "mine")
    proc = _run(installed, tmp_path, ["-m", "robopolicy.cli.deploy", "--config-dir", str(user), "robot=myarm", "run_dir=x", "--cfg", "job"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "obs_latency_s: 0.0123" in proc.stdout
