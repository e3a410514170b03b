"""The task config, adapter and robot config in docs/OWN_ROBOT.md, run as written against a stand-in
vendor SDK, pass robopolicy-check-robot's checks (the guide cannot drift from the interface)."""

from __future__ import annotations

import re
import sys
import time
import types
from pathlib import Path

import numpy as np
import yaml
from hydra.utils import instantiate

from robopolicy.envs import make_task
from robopolicy.runtime.check_robot import check_robot, format_table, passed

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "OWN_ROBOT.md"


def _block(lang: str, marker: str) -> str:
    blocks = re.findall(rf"```{lang}\n(.*?)```", GUIDE.read_text(), flags=re.S)
    return next(b for b in blocks if marker in b)


class _Arm:
    """Stand-in for a vendor SDK connection: 7 joints that jump to their commanded positions."""

    def __init__(self):
        self.q = np.zeros(7)
        self.open = True

    def latest_joint_state(self):
        return self.q.copy(), time.monotonic()

    def start_camera(self):
        return types.SimpleNamespace(latest_frame=lambda: np.zeros((96, 96, 3), np.uint8))

    def command_joint_positions(self, a):
        self.q = np.asarray(a, np.float64)

    def stop(self):
        pass

    def close(self):
        self.open = False


def test_guide_adapter_passes_check_robot(monkeypatch):
    monkeypatch.setitem(sys.modules, "vendor_sdk", types.SimpleNamespace(connect=lambda host: _Arm()))
    module = types.ModuleType("myarm_robot")
    exec(compile(_block("python", "class MyArm"), str(GUIDE), "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "myarm_robot", module)
    task = make_task(yaml.safe_load(_block("yaml", "_target_: robopolicy.runtime.robot.RobotTask")))
    robot = instantiate(yaml.safe_load(_block("yaml", "_target_: myarm_robot.MyArm")), task=task, _convert_="all")
    results = check_robot(robot, robot.obs_spec.control_hz, samples=10, latency_fraction=2.0, max_obs_age_s=0.5,
                          bound_margin=0.1, probe_clipping=True, call_timeout_s=1.0)
    assert passed(results), format_table(results)
