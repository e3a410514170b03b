"""robopolicy-check-robot: the simulated robot and a hand-written adapter pass; broken adapters fail
the right check with its fix sentence."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robopolicy.runtime.check_robot import FIXES, check_robot, format_table, passed
from robopolicy.runtime.fakes import PointEnv, PointRobot, point_spec
from robopolicy.runtime.sim_robot import SimRobot

REPO = Path(__file__).resolve().parents[1]
RATE_HZ = 20.0
# A latency budget of two periods (100 ms): the machine running the tests is shared, and a
# preempted call can take tens of ms there. SlowSend blocks far longer than that.
CHECKS = dict(samples=15, latency_fraction=2.0, max_obs_age_s=0.5, bound_margin=0.1, probe_clipping=True, call_timeout_s=1.0)


def failed(robot) -> set[str]:
    results = check_robot(robot, RATE_HZ, **CHECKS)
    return {r.name for r in results if r.passed is False}


def fix_of(robot, name: str) -> str:
    return next(r.fix for r in check_robot(robot, RATE_HZ, **CHECKS) if r.name == name)


class Float64Obs(PointRobot):
    def get_observation(self):
        obs, t = super().get_observation()
        return {"pos": obs["pos"].astype(np.float64)}, t


class BackwardsStamps(PointRobot):
    def get_observation(self):
        obs, t = super().get_observation()
        self.n = getattr(self, "n", 0) + 1
        return obs, t - (0.2 if self.n % 2 else 0.0)  # every other stamp 200 ms earlier


class WallClockStamps(PointRobot):
    def get_observation(self):
        obs, _ = super().get_observation()
        return obs, time.time()


class ConstantStamps(PointRobot):
    def get_observation(self):
        obs, _ = super().get_observation()
        self.t0 = getattr(self, "t0", time.monotonic())
        return obs, self.t0  # the time of the first reading, forever


class SlowSend(PointRobot):
    def send_action(self, action):
        time.sleep(5.0 / RATE_HZ)  # waits 250 ms for "the motion" instead of returning
        return super().send_action(action)


class NoClip(PointRobot):
    def send_action(self, action):
        super().send_action(action)
        return np.asarray(action, np.float32)  # claims to have sent the unclipped command


class StaleAfterDisconnect(PointRobot):
    def get_observation(self):
        if not self._connected:
            return {"pos": self._pos.astype(np.float32)}, time.monotonic()  # stale data instead of an error
        return super().get_observation()


class MissingKey(PointRobot):
    def get_observation(self):
        obs, t = super().get_observation()
        return {"position": obs["pos"]}, t  # renamed key, spec still says "pos"


class MovingHold(PointRobot):
    def hold_action(self, last_safe):
        return np.full(2, 0.3, np.float32)  # a velocity robot "holding" by moving


def test_sim_robot_passes_every_check():
    spec = point_spec(RATE_HZ)
    results = check_robot(SimRobot.from_defaults(lambda: PointEnv(spec), spec), RATE_HZ, **CHECKS)
    assert passed(results), format_table(results)


def test_hand_written_adapter_passes_every_check():
    results = check_robot(PointRobot(point_spec(RATE_HZ)), RATE_HZ, **CHECKS)
    assert passed(results), format_table(results)


def test_constant_timestamps_fail_both_timestamp_checks():
    assert failed(ConstantStamps(point_spec(RATE_HZ))) == {"timestamps measured", "timestamps monotonic"}


@pytest.mark.parametrize("adapter, check", [
    (Float64Obs, "obs shapes/dtypes"),
    (BackwardsStamps, "timestamps monotonic"),
    (WallClockStamps, "timestamps measured"),
    (SlowSend, "send_action latency"),
    (NoClip, "clipping"),
    (StaleAfterDisconnect, "disconnect"),
    (MissingKey, "obs keys"),
    (MovingHold, "hold action"),
])
def test_broken_adapter_fails_exactly_its_check(adapter, check):
    assert failed(adapter(point_spec(RATE_HZ))) == {check}


def test_failure_carries_its_fix_sentence():
    assert fix_of(Float64Obs(point_spec(RATE_HZ)), "obs shapes/dtypes") == FIXES["obs shapes/dtypes"]


def test_table_lists_the_fix_for_each_failure():
    table = format_table(check_robot(NoClip(point_spec(RATE_HZ)), RATE_HZ, **CHECKS))
    assert f"- clipping: {FIXES['clipping']}" in table


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MUJOCO_GL="egl")
    return subprocess.run([sys.executable, "-m", "robopolicy.cli.check_robot", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_passes_the_simulated_robot():
    proc = _cli("robot=sim", "checks.samples=10", "checks.latency_fraction=2.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_exits_2_with_one_sentence_on_failure():
    proc = _cli("robot=point", "checks.samples=5", "checks.latency_fraction=0.0000001")
    assert (proc.returncode, proc.stderr.strip().splitlines()[-1]) == (
        2, "error: 2 of 13 checks failed; apply the fixes above and run robopolicy-check-robot again.")
