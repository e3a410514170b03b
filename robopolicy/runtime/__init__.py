"""Real-time control runner: fixed-rate clock, off-thread inference, timestamped action chunks,
safety layer, watchdog and e-stop, policy server/client, episode recording, timing report.

Entry point: ``robopolicy-deploy`` (robopolicy/cli/deploy.py); see runner.py for the loop.
"""

from robopolicy.runtime.chunks import ActionBuffer, TimedChunk
from robopolicy.runtime.clock import FixedRateClock
from robopolicy.runtime.robot import Robot, RobotStatus
from robopolicy.runtime.runner import Runner, RunnerConfig
from robopolicy.runtime.safety import SafetyLayer
from robopolicy.runtime.sim_robot import SimRobot, make_sim_robot
from robopolicy.runtime.watchdog import EStop, Watchdog

__all__ = ["ActionBuffer", "EStop", "FixedRateClock", "Robot", "RobotStatus", "Runner", "RunnerConfig", "SafetyLayer",
           "SimRobot", "TimedChunk", "Watchdog", "make_sim_robot"]
