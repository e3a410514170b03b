"""Teleoperation devices: terminal keys, a Linux gamepad and scripted episodes (robopolicy/runtime/teleop.py)."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from robopolicy.errors import ConfigError
from robopolicy.runtime.fakes import PointRobot, point_spec
from robopolicy.runtime.teleop import (
    DISCARD,
    QUIT,
    START,
    STOP,
    KeyboardDevice,
    LinuxJoystickDevice,
    make_device,
    parse_keys,
)

OBS = {"pos": np.zeros(2, np.float32)}


class FakeTime:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture
def keyboard():
    r, w = os.pipe()
    clock = FakeTime()
    dev = KeyboardDevice(keys={"right": [0, 1], "left": [0, -1], "d": [1, 1]}, velocity=0.5, increment=0.1,
                         key_timeout_s=0.2, start_key="enter", stop_key="enter", discard_key="backspace",
                         quit_key="esc", initial=None, fd=r, time_fn=clock)
    dev.open(PointRobot(point_spec(hold=["zero", "last"])))
    yield dev, w, clock
    dev.close()
    os.close(r)
    try:
        os.close(w)
    except OSError:
        pass


def test_parse_keys_names_arrows_enter_and_escape():
    assert parse_keys(b"\x1b[C\r\x1bx\x7f") == ["right", "enter", "esc", "x", "backspace"]


def test_enter_starts_when_idle(keyboard):
    dev, w, _ = keyboard
    os.write(w, b"\r")
    assert dev.read(OBS, recording=False).events == (START,)


def test_enter_stops_while_recording(keyboard):
    dev, w, _ = keyboard
    os.write(w, b"\r")
    assert dev.read(OBS, recording=True).events == (STOP,)


def test_backspace_discards_while_recording(keyboard):
    dev, w, _ = keyboard
    os.write(w, b"\x7f")
    assert dev.read(OBS, recording=True).events == (DISCARD,)


def test_arrow_key_drives_a_zero_held_dim_at_the_velocity_fraction(keyboard):
    dev, w, _ = keyboard
    os.write(w, b"\x1b[D")
    assert dev.read(OBS, recording=True).action[0] == pytest.approx(-0.5)


def test_zero_held_dim_returns_to_zero_after_the_key_timeout(keyboard):
    dev, w, clock = keyboard
    os.write(w, b"\x1b[C")
    dev.read(OBS, recording=True)
    clock.t += 0.3
    assert dev.read(OBS, recording=True).action[0] == 0.0


def test_last_held_dim_steps_per_press_and_stays(keyboard):
    dev, w, clock = keyboard
    os.write(w, b"dd")
    dev.read(OBS, recording=True)
    clock.t += 5.0
    assert dev.read(OBS, recording=True).action[1] == pytest.approx(2 * 0.1 * 2.0)  # 2 presses x 10% of range 2


def test_end_of_input_quits(keyboard):
    dev, w, _ = keyboard
    os.close(w)
    assert QUIT in dev.read(OBS, recording=False).events


def _js_events(path, events):
    with open(path, "wb") as f:
        for value, kind, number in events:
            f.write(struct.pack("IhBB", 0, value, kind, number))


def test_gamepad_axis_drives_its_action_dim(tmp_path):
    path = tmp_path / "js0"
    _js_events(path, [(16384, 0x02, 1)])
    dev = LinuxJoystickDevice(str(path), axes={0: [1, 1.0]}, buttons={0: "start"}, deadzone=0.05)
    dev.open(PointRobot(point_spec()))
    assert dev.read(OBS, recording=True).action[0] == pytest.approx(16384 / 32767)


def test_gamepad_button_press_sends_its_event(tmp_path):
    path = tmp_path / "js0"
    _js_events(path, [(1, 0x81, 0), (1, 0x01, 0)])  # the initial-state report, then a real press
    dev = LinuxJoystickDevice(str(path), axes={}, buttons={0: "start"}, deadzone=0.05)
    dev.open(PointRobot(point_spec()))
    assert dev.read(OBS, recording=False).events == (START,)


def test_missing_gamepad_is_a_config_error(tmp_path):
    dev = LinuxJoystickDevice(str(tmp_path / "nope"), axes={}, buttons={}, deadzone=0.05)
    with pytest.raises(ConfigError, match="Cannot open the gamepad"):
        dev.open(PointRobot(point_spec()))


def _play(dev, recording_after_start=True, ticks=20):
    """Events and actions of a scripted device, with the loop's recording flag simulated."""
    out, recording = [], False
    for _ in range(ticks):
        inp = dev.read(OBS, recording)
        out.append(inp)
        if START in inp.events:
            recording = True
        if STOP in inp.events or DISCARD in inp.events:
            recording = False
        if QUIT in inp.events:
            break
    return out


def test_scripted_device_plays_start_actions_stop_then_quit():
    dev = make_device("scripted", actions=[np.full((2, 2), 0.5, np.float32)], idle_ticks=0)
    dev.open(PointRobot(point_spec()))
    assert [inp.events for inp in _play(dev)] == [(START,), (), (), (STOP,), (QUIT,)]


def test_scripted_device_discards_the_listed_episodes():
    dev = make_device("scripted", actions=[np.zeros((1, 2), np.float32)] * 2, discard=[0], idle_ticks=0)
    dev.open(PointRobot(point_spec()))
    ends = [ev for inp in _play(dev) for ev in inp.events if ev in (STOP, DISCARD)]
    assert ends == [DISCARD, STOP]


def test_scripted_device_rejects_actions_of_the_wrong_size():
    dev = make_device("scripted", actions=[np.zeros((3, 5), np.float32)])
    with pytest.raises(ConfigError, match="2-dimensional actions"):
        dev.open(PointRobot(point_spec()))


def test_scripted_expert_needs_the_simulated_robot():
    dev = make_device("scripted", expert=True)
    with pytest.raises(ConfigError, match="needs the simulated robot"):
        dev.open(PointRobot(point_spec()), task=object())


def test_keyboard_puts_a_terminal_in_cbreak_mode_and_restores_it():
    import termios

    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        dev = KeyboardDevice(keys={}, velocity=0.5, increment=0.1, key_timeout_s=0.2, start_key="enter",
                             stop_key="enter", discard_key="backspace", quit_key="esc", initial=None, fd=slave)
        dev.open(PointRobot(point_spec()))
        echo_while_open = bool(termios.tcgetattr(slave)[3] & termios.ECHO)
        dev.close()
        assert (echo_while_open, termios.tcgetattr(slave)) == (False, before)
    finally:
        os.close(master)
        os.close(slave)
