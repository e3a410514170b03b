"""The robot's action spec: bounds, dtype, hold modes and the hold action (robopolicy/runtime/robot.py)."""

from __future__ import annotations

import numpy as np
import pytest

from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import ConfigError
from robopolicy.runtime.fakes import PointRobot, point_spec
from robopolicy.runtime.robot import ActionSpec, NotConnectedError


def arm_spec(hold=None) -> EnvSpec:
    extra = {} if hold is None else {"hold": hold}
    return EnvSpec(obs={"q": ObsKeySpec((3,))}, action_dim=3, action_low=(-1.0, -2.0, 0.0), action_high=(1.0, 2.0, 1.0),
                   max_episode_steps=10, control_hz=10.0, extra=extra)


def test_action_spec_is_not_the_observation_spec():
    robot = PointRobot(point_spec())
    assert isinstance(robot.action_spec, ActionSpec)


def test_action_spec_shape_and_bounds_come_from_the_env_spec():
    spec = ActionSpec.from_env_spec(arm_spec())
    assert (spec.shape, spec.low, spec.high) == ((3,), (-1.0, -2.0, 0.0), (1.0, 2.0, 1.0))


def test_hold_modes_default_to_the_spec_extra():
    assert ActionSpec.from_env_spec(arm_spec(["zero", "zero", "last"])).hold == ("zero", "zero", "last")


def test_hold_modes_default_to_last_without_extra():
    assert ActionSpec.from_env_spec(arm_spec()).hold == ("last", "last", "last")


def test_hold_action_zeroes_zero_dims_and_keeps_last_dims():
    spec = ActionSpec.from_env_spec(arm_spec(["zero", "zero", "last"]))
    np.testing.assert_array_equal(spec.hold_action(np.array([0.5, -1.5, 0.7])), np.array([0.0, 0.0, 0.7], np.float32))


def test_hold_action_is_clipped_into_the_bounds():
    spec = ActionSpec.from_env_spec(arm_spec())  # dim 2 has low 0, so zeros are fine, but 5 is not
    np.testing.assert_array_equal(spec.hold_action(np.array([5.0, -5.0, 5.0])), np.array([1.0, -2.0, 1.0], np.float32))


def test_unknown_hold_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="robot.hold must be"):
        ActionSpec.from_env_spec(arm_spec(), hold="brake")


def test_clip_returns_the_declared_dtype():
    assert ActionSpec.from_env_spec(arm_spec()).clip(np.array([0.1, 0.2, 0.3], np.float64)).dtype == np.float32


def test_point_robot_raises_not_connected_before_connect():
    with pytest.raises(NotConnectedError):
        PointRobot(point_spec()).get_observation()


def test_robot_task_has_no_simulator_to_evaluate_in():
    from robopolicy.errors import TaskError
    from robopolicy.runtime.robot import RobotTask

    with pytest.raises(TaskError, match="no simulator"):
        RobotTask("point", point_spec().to_dict()).make_env()
