"""Real-time control runner: fixed-rate clock, off-thread inference, timestamped action chunks,
safety layer, watchdog and e-stop, policy server/client, episode recording, timing report.

Entry point: ``robopolicy-deploy`` (robopolicy/cli/deploy.py); see runner.py for the loop.

The names below are imported on first use (PEP 562), so ``import robopolicy.runtime.client``
pulls in only numpy and pyzmq: a robot computer can run the client without torch or simulators.
"""

from importlib import import_module

_EXPORTS = {
    "ActionBuffer": "chunks", "TimedChunk": "chunks", "FixedRateClock": "clock", "Robot": "robot",
    "RobotStatus": "robot", "Runner": "runner", "RunnerConfig": "runner", "SafetyLayer": "safety",
    "SimRobot": "sim_robot", "make_sim_robot": "sim_robot", "EStop": "watchdog", "Watchdog": "watchdog",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"robopolicy.runtime.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'robopolicy.runtime' has no attribute {name!r}")


__all__ = list(_EXPORTS)
