"""robopolicy-record: scripted episodes into the store, discard, training accepts the store, and a
kill during recording loses no saved episode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.cli.record import open_store, record
from robopolicy.data import EpisodeStore
from robopolicy.data.windows import WindowDataset
from robopolicy.errors import DataError
from robopolicy.runtime.fakes import PointEnv, point_spec
from robopolicy.runtime.sim_robot import SimRobot
from robopolicy.runtime.teleop import make_device

REPO = Path(__file__).resolve().parents[1]
RATE_HZ = 100.0


def scripts(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-0.9, 0.9, size=(n, 2)).astype(np.float32) for n in lengths]


def record_scripted(path, sequences, discard=()):
    spec = point_spec(RATE_HZ, max_episode_steps=100000)
    robot = SimRobot.from_defaults(lambda: PointEnv(spec), spec, stop_on_success=False)
    recorder = open_store(path, spec, {"source": "test"})
    robot.connect()
    try:
        record(robot, make_device("scripted", actions=sequences, discard=discard), recorder, RATE_HZ, stop_on_done=True)
    finally:
        robot.disconnect()
    return EpisodeStore.open(path)


def test_scripted_episodes_are_stored_with_the_actions_sent(tmp_path):
    seqs = scripts([5, 8])
    store = record_scripted(tmp_path / "s.zarr", seqs)
    np.testing.assert_array_equal(np.concatenate([store.episode(i)["action"] for i in range(2)]), np.concatenate(seqs))


def test_discard_drops_the_episode(tmp_path):
    seqs = scripts([5, 6, 7])
    store = record_scripted(tmp_path / "s.zarr", seqs, discard=[1])
    np.testing.assert_array_equal(store.episode_ends, [5, 12])


def test_recorded_store_gives_training_windows(tmp_path):
    store = record_scripted(tmp_path / "s.zarr", scripts([12, 9]))
    windows = WindowDataset(store, obs_keys=["pos"], obs_horizon=2, action_horizon=4)
    assert windows[0]["action"].shape == (4, 2)


def test_appending_at_another_rate_is_refused(tmp_path):
    record_scripted(tmp_path / "s.zarr", scripts([3]))
    with pytest.raises(DataError, match="record into a new store"):
        open_store(tmp_path / "s.zarr", point_spec(RATE_HZ / 2), {})


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MUJOCO_GL="egl")


@pytest.fixture(scope="module")
def expert_store(tmp_path_factory):
    """robopolicy-record with the scripted expert on the simulated planar pusher (4 episodes)."""
    out = tmp_path_factory.mktemp("rec") / "expert.zarr"
    proc = subprocess.run([sys.executable, "-m", "robopolicy.cli.record", "robot=sim", "task=planar_push",
                           "task.control_hz=100", "teleop=scripted", "teleop.expert=true", "teleop.episodes=4",
                           "teleop.max_steps=40", f"out={out}"], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_cli_records_robot_task_and_rate(expert_store):
    attrs = EpisodeStore.open(expert_store).attrs
    assert (attrs["source"], attrs["robot"], attrs["task"], attrs["rate_hz"]) == ("robopolicy-record", "sim", "planar_push", 100.0)


def test_robopolicy_train_accepts_the_recorded_store(expert_store, tmp_path):
    from robopolicy.cli.train import train

    overrides = ["task=planar_push", "policy=beso", "net=mlp", "net.hidden_dims=[32,32]", "batch_size=8", "steps=2",
                 "val_fraction=0.25", "val_every=2", "ckpt_every=2", "log_every=1", "progress=false", "device=cpu",
                 "wandb.mode=disabled", "optim.warmup_steps=1", "final_eval.episodes=0",
                 f"dataset={expert_store}", f"run_dir={tmp_path / 'run'}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    train(cfg)
    assert (tmp_path / "run" / "checkpoints" / "latest.json").is_file()


def _episodes(path) -> int:
    """Committed episodes of a store another process is writing (0 while it is being created)."""
    try:
        return EpisodeStore.open(path).n_episodes
    except DataError:
        return 0


def test_kill_during_recording_loses_no_saved_episode(tmp_path):
    seqs = scripts([6, 9, 4])
    actions = tmp_path / "actions.npz"
    np.savez(actions, *seqs)
    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "robopolicy.cli.record", "robot=point", f"rate_hz={RATE_HZ}",
                             "teleop=scripted", f"teleop.actions={actions}", "teleop.repeat=true", "progress=false",
                             f"out={out}"], cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _episodes(out) < 4:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = EpisodeStore.open(out, mode="a")
    got = [store.episode(i)["action"] for i in range(store.n_episodes)]
    want = [seqs[i % 3] for i in range(len(got))]
    assert len(got) >= 4
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


class LoggingRobot(SimRobot):
    """SimRobot that keeps every action it sent."""

    def __init__(self, spec):
        super().__init__(lambda: PointEnv(spec), spec, **SimRobot.settings(stop_on_success=False))
        self.sent: list[np.ndarray] = []

    def send_action(self, action):
        out = super().send_action(action)
        self.sent.append(out)
        return out


def test_robot_is_holding_while_an_episode_is_appended(tmp_path):
    spec = point_spec(RATE_HZ)
    robot = LoggingRobot(spec)
    recorder = open_store(tmp_path / "s.zarr", spec, {})
    at_append = []
    end_episode = recorder.end_episode
    recorder.end_episode = lambda status: (at_append.append(robot.sent[-1].copy()), end_episode(status))[1]
    robot.connect()
    record(robot, make_device("scripted", actions=[np.full((3, 2), 0.8, np.float32)]), recorder, RATE_HZ, stop_on_done=True)
    robot.disconnect()
    np.testing.assert_array_equal(at_append, [np.zeros(2, np.float32)])


def test_keyboard_session_in_a_terminal_records_one_episode(tmp_path):
    """robopolicy-record on a pseudo-terminal: Enter, right arrow held, Enter, Esc."""
    import select

    out = tmp_path / "kb.zarr"
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "robopolicy.cli.record", "robot=point", f"out={out}"], cwd=REPO,
                            env=_env(), stdin=slave, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        seen, deadline = b"", time.monotonic() + 120
        while b"keys:" not in seen and time.monotonic() < deadline:  # the help line: the terminal is in cbreak mode
            if select.select([proc.stderr], [], [], 0.5)[0]:
                seen += os.read(proc.stderr.fileno(), 4096)
        os.write(master, b"\r")
        for _ in range(10):
            time.sleep(0.05)
            os.write(master, b"\x1b[C")
        time.sleep(0.2)
        os.write(master, b"\r")
        time.sleep(0.3)
        os.write(master, b"\x1b")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        os.close(slave)
    actions = EpisodeStore.open(out).episode(0)["action"]
    velocity = OmegaConf.load(CONF_DIR / "teleop" / "keyboard.yaml").velocity  # x the bound 1 of dim 0
    assert actions[:, 0].max() == pytest.approx(velocity)


def test_a_store_from_a_robot_without_simulator_trains_with_its_robot_task(tmp_path):
    from robopolicy.cli.train import train
    from robopolicy.runtime.fakes import PointRobot

    spec = point_spec(RATE_HZ)
    robot = PointRobot(spec)
    recorder = open_store(tmp_path / "p.zarr", spec, {})
    robot.connect()
    record(robot, make_device("scripted", actions=scripts([20, 20, 20, 20])), recorder, RATE_HZ, stop_on_done=True)
    robot.disconnect()
    task = {"_target_": "robopolicy.runtime.robot.RobotTask", "name": "point", "spec": spec.to_dict(),
            "meta_keys": ["obs_horizon", "action_horizon", "exec_horizon"], "obs_horizon": 2, "action_horizon": 8, "exec_horizon": 4}
    overrides = ["task=planar_push", "policy=beso", "net=mlp", "net.hidden_dims=[32,32]", "batch_size=8", "steps=2",
                 "val_fraction=0.25", "val_every=2", "ckpt_every=2", "log_every=1", "progress=false", "device=cpu",
                 "wandb.mode=disabled", "optim.warmup_steps=1", "eval.every=0", "final_eval.episodes=0",
                 f"dataset={tmp_path / 'p.zarr'}", f"run_dir={tmp_path / 'run'}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    cfg.task = task
    train(cfg)
    assert (tmp_path / "run" / "checkpoints" / "latest.json").is_file()
