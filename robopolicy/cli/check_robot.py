"""``robopolicy-check-robot``: does a robot adapter meet the contract the runner relies on?

    robopolicy-check-robot robot=myarm
    robopolicy-check-robot robot=sim task=metaworld task.env_name=push-v3

Builds the robot from ``conf/robot/<name>.yaml`` (given the task, as ``robopolicy-deploy`` does),
runs :func:`robopolicy.runtime.check_robot.check_robot` and prints a pass/fail table with the fix
for each failure. Exit status 0 when every check passes, 2 otherwise.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from robopolicy.cli._hydra import hydra_command
from robopolicy.errors import RobopolicyError


class RobotCheckFailed(RobopolicyError):
    """The adapter failed one or more conformance checks."""


@hydra_command("check_robot")
def main(cfg: DictConfig) -> list:
    from hydra.utils import instantiate

    from robopolicy.envs import make_task
    from robopolicy.runtime.check_robot import check_robot, format_table, passed

    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    robot = instantiate(cfg.robot, task=make_task(cfg.task), _convert_="all")
    rate_hz = float(cfg.rate_hz or robot.obs_spec.control_hz)
    results = check_robot(robot, rate_hz, **OmegaConf.to_container(cfg.checks, resolve=True))
    print(f"robot {cfg.robot.get('_target_')} at {rate_hz:g} Hz (period {1e3 / rate_hz:.1f} ms)")
    print(format_table(results))
    if not passed(results):
        n = sum(r.passed is False for r in results)
        raise RobotCheckFailed(f"{n} of {len(results)} checks failed; apply the fixes above and run robopolicy-check-robot again.")
    print(f"all {sum(r.passed is True for r in results)} checks passed")
    return results


if __name__ == "__main__":
    main()
