"""robopolicy-policy-server serving a goal-conditioned BESO steered by a V-GPS critic on both
endpoints, and robopolicy-deploy driving it through server=tcp:// and server=ws:// with a goal."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from _server_toys import make_critic_run, make_goal_beso_run

from robopolicy.cli._hydra import REPO_ROOT
from robopolicy.errors import ConfigError
from robopolicy.runtime.client import PolicyClient
from robopolicy.runtime.openpi_wire import OpenPIPredictor

GOAL = "{state:[0,0,0,0,0,0.75]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    return dict(os.environ, MUJOCO_GL="egl", PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("srvcli")
    return make_goal_beso_run(tmp / "beso"), make_critic_run(tmp)


@pytest.fixture(scope="module")
def server(runs):
    beso, critic = runs
    zport, wport = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "robopolicy.cli.policy_server", f"run_dir={beso}", "device=cpu",
                             "steer=vgps", f"steer.critic={critic}", "steer.k=3", "token=tok",
                             f"bind=tcp://127.0.0.1:{zport}", f"openpi=ws://127.0.0.1:{wport}"],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Ctrl-C stops" in line or (not line and proc.poll() is not None):
            break
    assert proc.poll() is None, "".join(lines)[-3000:]
    yield f"tcp://127.0.0.1:{zport}", f"ws://127.0.0.1:{wport}", runs
    proc.terminate()
    proc.wait(20)


@pytest.mark.slow
def test_server_describes_a_steered_goal_conditioned_policy(server):
    zmq_ep, _, _ = server
    c = PolicyClient(zmq_ep, token="tok", timeout_s=30.0)
    assert c.info["steered"] is True
    assert c.goal_keys == ["state"]
    c.close()


@pytest.mark.slow
def test_steered_goal_policy_answers_on_both_endpoints(server):
    zmq_ep, ws_ep, _ = server
    obs = {"state": np.zeros((1, 2, 6), np.float32)}
    goal = {"state": np.array([0, 0, 0, 0, 0, 0.75], np.float32)}
    c = PolicyClient(zmq_ep, token="tok", timeout_s=30.0, goal=goal)
    assert c(obs).shape == (15, 2)
    c.close()
    w = OpenPIPredictor(ws_ep, token="tok", timeout_s=30.0, goal=goal)
    assert w(obs).shape == (15, 2)
    w.close()


@pytest.mark.slow
def test_deploy_through_the_server_with_a_goal(server, tmp_path):
    # (server=ws:// goes through the same build_predictor branch; the runner over the openpi
    # endpoint is tested in test_server_openpi.py without the 30 s of a second deploy process.)
    zmq_ep, _, (beso, _) = server
    out = tmp_path / "rep"
    proc = subprocess.run([sys.executable, "-m", "robopolicy.cli.deploy", f"run_dir={beso}", "device=cpu",
                           f"server={zmq_ep}", "token=tok", f"goal={GOAL}",
                           "runner=eval_match", "rate_hz=10", "duration_s=0", "runner.episodes=2",
                           "runner.server_timeout_s=10", f"out={out}", "plot=false"],
                          env=env(), capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads((out / "timing.json").read_text())
    assert rep["episodes"] == 2
    assert rep["stop_reason"] == "episodes"
    assert rep["server_added_latency_ms"]["p50"] is not None


@pytest.mark.slow
def test_goal_missing_a_key_is_one_sentence(server):
    zmq_ep, _, _ = server
    with pytest.raises(ConfigError, match=r"^The goal lacks key\(s\) \['state'\]; the served policy needs goal keys \['state'\]\.$"):
        PolicyClient(zmq_ep, token="tok", timeout_s=30.0, goal={"other": [1.0]})


def test_server_without_any_endpoint_is_one_sentence(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "robopolicy.cli.policy_server", f"run_dir={tmp_path}", "bind=null"],
                          env=env(), capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: Neither bind= nor openpi= is set")
    assert proc.stderr.count("\n") == 1
