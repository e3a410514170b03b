"""robopolicy-deploy end to end: a tiny trained run on its simulated task, thread and process
inference, the timing report, recording, and one-sentence errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from robopolicy.cli._hydra import CONF_DIR, REPO_ROOT
from robopolicy.data import EpisodeStore
from robopolicy.envs import make_task

TINY = ["task=multimodal", "policy=beso", "net=mlp", "net.hidden_dims=[32,32]", "batch_size=8", "steps=3",
        "val_fraction=0.25", "val_every=3", "ckpt_every=3", "log_every=2", "progress=false", "device=cpu",
        "wandb.mode=disabled", "optim.warmup_steps=1", "final_eval.episodes=0", "task.max_episode_steps=20"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from robopolicy.cli.train import train

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        spec = make_task(compose("train", overrides=["task=multimodal", "dataset=x", "run_dir=x"]).task).spec
    tmp = tmp_path_factory.mktemp("deploy")
    rng = np.random.default_rng(0)
    store = EpisodeStore.create(tmp / "mm.zarr", spec)
    for _ in range(4):
        T = 30
        ep = {k: rng.normal(size=(T, *v.shape)).astype(np.float32) for k, v in spec.obs.items()}
        ep["action"] = rng.uniform(-1, 1, size=(T, spec.action_dim)).astype(np.float32)
        ep.update(reward=np.zeros(T, np.float32), success=np.zeros(T, bool), done=np.zeros(T, bool))
        store.append_episode(ep)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=TINY + [f"dataset={tmp / 'mm.zarr'}", f"run_dir={tmp / 'run'}"])
    train(cfg)
    return tmp / "run"


def deploy(args, cwd, timeout=180):
    env = dict(os.environ, MUJOCO_GL="egl", PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "robopolicy.cli.deploy", *args], env=env, capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("inference", ["thread", "process"])
def test_deploy_runs_and_reports(run_dir, tmp_path, inference):
    out = tmp_path / "report"
    rec = tmp_path / "rec.zarr"
    # a fixed number of episodes, not a duration, so the count of ticks does not depend on the machine's speed
    proc = deploy([f"run_dir={run_dir}", "rate_hz=20", "duration_s=0", "runner.episodes=2", f"out={out}",
                   f"record={rec}", f"runner.inference={inference}", "runner.stop_after_s=30", "device=cpu"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads((out / "timing.json").read_text())
    assert all(rep["period_error_ms"][k] is not None for k in ("p50", "p99", "p99.9", "max"))
    assert rep["stale_actions_executed"] == 0
    assert rep["episodes"] == 2
    assert rep["chunks"] >= 1
    assert {"deadline_misses", "watchdog_trips", "safety_interventions", "inference_latency_ms", "successes"} <= set(rep)
    assert (out / "timing.png").stat().st_size > 0
    if inference == "process":
        assert rep["server_added_latency_ms"]["p50"] is not None
    store = EpisodeStore.open(rec)
    assert store.n_episodes == 2
    assert store.n_steps == rep["ticks"]


def test_deploy_errors_are_one_sentence(tmp_path):
    proc = deploy([f"run_dir={tmp_path / 'nope'}"], tmp_path, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
