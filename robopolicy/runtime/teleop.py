"""Teleoperation devices for recording demonstrations: one small interface, several devices.

A device is read once per control tick by the recording loop (``robopolicy-record``)::

    device.open(robot, task)            # learns the action spec (and, for a scripted expert, the sim)
    inp = device.read(obs, recording)   # -> TeleopInput(action (A,) or None, events)
    device.close()

``events`` are any of :data:`START` (begin an episode), :data:`STOP` (end it and save it),
:data:`DISCARD` (end it and drop it) and :data:`QUIT`. An action of ``None`` means "no command":
the loop sends the robot's hold action.

Devices here:

* :class:`KeyboardDevice`: keys of the terminal (stdin in cbreak mode, read with ``select``;
  stdlib only, works over ssh, no X server needed). Dims held at zero (velocity/delta commands)
  move while their key is held (terminal auto-repeat keeps it alive); dims held at their last value
  (position targets, a gripper) step by a fixed increment per key press.
* :class:`LinuxJoystickDevice`: a gamepad through the Linux joystick API (``/dev/input/js*``:
  8-byte events, stdlib only); axes drive action dims, buttons send events.
* :class:`ScriptedDevice`: replays given action sequences or the task's scripted expert (tests,
  and checking a recording setup end to end without a person).

A space mouse or another device: subclass :class:`TeleopDevice`, implement ``read``, and point a
``conf/teleop/<name>.yaml``'s ``_target_`` at it (docs/OWN_ROBOT.md).
"""

from __future__ import annotations

import abc
import logging
import os
import select
import struct
import sys
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from robopolicy.errors import ConfigError

log = logging.getLogger(__name__)

START, STOP, DISCARD, QUIT = "start", "stop", "discard", "quit"
EVENTS = (START, STOP, DISCARD, QUIT)


@dataclass(frozen=True)
class TeleopInput:
    """One reading: ``action`` (A,) float32 in the robot's bounds, or None (hold); ``events``."""

    action: np.ndarray | None = None
    events: tuple[str, ...] = field(default_factory=tuple)


class TeleopDevice(abc.ABC):
    """Base class: ``open`` stores the robot's action spec, ``read`` once per tick, ``close``."""

    def open(self, robot, task=None) -> None:
        """Called once before the first ``read``; ``robot`` is connected."""
        self.action_spec = robot.action_spec

    @abc.abstractmethod
    def read(self, obs: Mapping[str, np.ndarray], recording: bool) -> TeleopInput:
        """The command and events for this tick; must not block (return within a fraction of a period)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device (restore the terminal, close files)."""

    def help(self) -> str:
        """One line telling the operator how to use the device."""
        return ""


def make_device(name: str, **overrides) -> TeleopDevice:
    """The device of ``conf/teleop/<name>.yaml`` with keyword ``overrides`` (any Python values, e.g.
    arrays of actions): for scripts and tests that do not go through Hydra."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from robopolicy.cli._hydra import CONF_DIR

    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "teleop" / f"{name}.yaml"), resolve=True)
    cls = get_class(cfg.pop("_target_"))
    return cls(**{**cfg, **overrides})


# -- keyboard ------------------------------------------------------------------------------------

# Multi-byte sequences a terminal sends for named keys (ANSI/VT100), and single-byte names.
_SEQUENCES = {b"\x1b[A": "up", b"\x1b[B": "down", b"\x1b[C": "right", b"\x1b[D": "left",
              b"\x1bOA": "up", b"\x1bOB": "down", b"\x1bOC": "right", b"\x1bOD": "left"}
_SINGLE = {b"\r": "enter", b"\n": "enter", b"\x7f": "backspace", b"\x08": "backspace", b"\x1b": "esc",
           b" ": "space", b"\t": "tab"}


def parse_keys(data: bytes) -> list[str]:
    """Terminal bytes -> key names ("up", "enter", "esc", "a", ...), in order."""
    keys, i = [], 0
    while i < len(data):
        seq = data[i:i + 3]
        if seq in _SEQUENCES:
            keys.append(_SEQUENCES[seq])
            i += 3
            continue
        ch = data[i:i + 1]
        keys.append(_SINGLE.get(ch) or ch.decode("latin-1"))
        i += 1
    return keys


class KeyboardDevice(TeleopDevice):
    """Terminal keys -> actions and events.

    keys: key name -> [action dim, sign] (e.g. ``{"d": [0, 1], "a": [0, -1]}``); ``velocity``:
    command of a zero-held dim while its key is active, as a fraction of its bound; a key stays
    active ``key_timeout_s`` after its last press (longer than the terminal's auto-repeat gap);
    ``increment``: step of a last-held dim per press, as a fraction of its range; ``initial``:
    the last-held dims' starting command (None: the hold action from zeros). ``start_key`` /
    ``stop_key`` may be the same key (it then toggles). ``fd``: file descriptor to read (None: stdin).
    Defaults: conf/teleop/keyboard.yaml.
    """

    def __init__(self, keys: Mapping[str, Sequence[float]], velocity: float, increment: float, key_timeout_s: float,
                 start_key: str, stop_key: str, discard_key: str, quit_key: str, initial: Sequence[float] | None,
                 fd: int | None, time_fn=None):
        from robopolicy.runtime.clock import now

        self.keys = {str(k): (int(v[0]), float(v[1])) for k, v in dict(keys).items()}
        self.velocity, self.increment, self.key_timeout_s = float(velocity), float(increment), float(key_timeout_s)
        self.start_key, self.stop_key, self.discard_key, self.quit_key = start_key, stop_key, discard_key, quit_key
        self.initial = None if initial is None else np.asarray(initial, np.float32)
        self._fd = fd
        self._time = time_fn or now
        self._saved_tty = None
        self._last_press: dict[str, float] = {}
        self._target: np.ndarray | None = None
        self._eof = False

    def open(self, robot, task=None) -> None:
        super().open(robot, task)
        spec = self.action_spec
        unused = [k for k, (dim, _) in self.keys.items() if not 0 <= dim < spec.dim]
        if unused:  # a key map written for a robot with more dims: those keys do nothing here
            log.info("keys %s map to action dims this %d-dimensional robot does not have; they are ignored", unused, spec.dim)
            self.keys = {k: v for k, v in self.keys.items() if k not in unused}
        self._target = spec.hold_action(self.initial)
        if self.initial is None and "last" in spec.hold:
            log.warning("action dims %s hold their last value and teleop.initial is not set: their first command is %s; "
                        "set teleop.initial to the robot's current command", [i for i, m in enumerate(spec.hold) if m == "last"],
                        self._target.tolist())
        if self._fd is None:
            self._fd = sys.stdin.fileno()
        if os.isatty(self._fd):
            import termios
            import tty

            self._saved_tty = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)  # keys arrive one by one, no echo; Ctrl-C still interrupts

    def close(self) -> None:
        if self._saved_tty is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved_tty)
            self._saved_tty = None

    def help(self) -> str:
        moves = " ".join(f"{k}:{'+' if s > 0 else '-'}a[{d}]" for k, (d, s) in self.keys.items())
        toggle = self.start_key if self.start_key == self.stop_key else f"{self.start_key}/{self.stop_key}"
        return f"keys: {toggle} start/stop, {self.discard_key} discard, {self.quit_key} quit; {moves}"

    def _pending(self) -> bytes:
        data = b""
        while not self._eof and select.select([self._fd], [], [], 0)[0]:
            chunk = os.read(self._fd, 1024)
            if not chunk:
                self._eof = True
                break
            data += chunk
        return data

    def read(self, obs, recording: bool) -> TeleopInput:
        t = self._time()
        events: list[str] = []
        for key in parse_keys(self._pending()):
            if key == self.start_key and not recording and START not in events:
                events.append(START)
            elif key == self.stop_key and recording:
                events.append(STOP)
            elif key == self.discard_key and recording:
                events.append(DISCARD)
            elif key == self.quit_key:
                events.append(QUIT)
            elif key in self.keys:
                self._press(key, t)
        if self._eof and QUIT not in events:
            log.warning("the keyboard input ended (end of file); quitting")
            events.append(QUIT)
        return TeleopInput(self._action(t), tuple(events))

    def _press(self, key: str, t: float) -> None:
        dim, sign = self.keys[key]
        spec = self.action_spec
        if spec.hold[dim] == "last":
            step = self.increment * (spec.high[dim] - spec.low[dim])
            self._target[dim] = np.clip(self._target[dim] + sign * step, spec.low[dim], spec.high[dim])
        else:
            self._last_press[key] = t

    def _action(self, t: float) -> np.ndarray:
        spec = self.action_spec
        a = spec.hold_action(self._target)
        for key, t_press in self._last_press.items():
            if t - t_press <= self.key_timeout_s:
                dim, sign = self.keys[key]
                bound = spec.high[dim] if sign > 0 else -spec.low[dim]
                a[dim] += sign * self.velocity * bound
        return spec.clip(a)


# -- gamepad (Linux joystick API) ------------------------------------------------------------------

_JS_EVENT = struct.Struct("IhBB")  # time (ms), value, type, number: <linux/joystick.h> struct js_event
_JS_BUTTON, _JS_AXIS, _JS_INIT = 0x01, 0x02, 0x80


class LinuxJoystickDevice(TeleopDevice):
    """A gamepad on ``/dev/input/js<N>``.

    axes: action dim -> [axis number, scale] (scale -1 flips a stick); a zero-held dim's command is
    ``axis * scale`` times its bound; a last-held dim maps the axis' [-1, 1] onto its [low, high].
    ``deadzone``: stick values below it count as 0. buttons: button number -> event name.
    """

    def __init__(self, path: str, axes: Mapping[int, Sequence[float]], buttons: Mapping[int, str], deadzone: float):
        self.path = str(path)
        self.axes = {int(d): (int(v[0]), float(v[1])) for d, v in dict(axes).items()}
        self.buttons = {int(b): str(e) for b, e in dict(buttons).items()}
        bad = sorted(set(self.buttons.values()) - set(EVENTS))
        if bad:
            raise ConfigError(f"teleop.buttons name unknown events {bad}; use {', '.join(EVENTS)}.")
        self.deadzone = float(deadzone)
        self._fd: int | None = None
        self._axis_values: dict[int, float] = {}

    def open(self, robot, task=None) -> None:
        super().open(robot, task)
        bad = [d for d in self.axes if not 0 <= d < self.action_spec.dim]
        if bad:
            raise ConfigError(f"teleop.axes names action dims {bad} outside 0..{self.action_spec.dim - 1}; "
                              "map axes to this robot's action dims.")
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            raise ConfigError(f"Cannot open the gamepad {self.path} ({e.strerror}); plug it in and pass "
                              "teleop.path=/dev/input/jsN (ls /dev/input/js*).") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def help(self) -> str:
        return "gamepad: " + ", ".join(f"button {b} {e}" for b, e in sorted(self.buttons.items()))

    def read(self, obs, recording: bool) -> TeleopInput:
        events: list[str] = []
        while True:
            try:
                data = os.read(self._fd, _JS_EVENT.size * 64)
            except BlockingIOError:
                break
            if len(data) < _JS_EVENT.size:
                break
            for off in range(0, len(data) - _JS_EVENT.size + 1, _JS_EVENT.size):
                _, value, kind, number = _JS_EVENT.unpack_from(data, off)
                if kind & _JS_AXIS:
                    self._axis_values[number] = value / 32767.0
                elif kind == _JS_BUTTON and value == 1 and number in self.buttons:  # presses, not the init state
                    ev = self.buttons[number]
                    if (ev == START) != recording or ev == QUIT:
                        events.append(ev)
        return TeleopInput(self._action(), tuple(events))

    def _action(self) -> np.ndarray:
        spec = self.action_spec
        a = spec.hold_action(None)
        for dim, (axis, scale) in self.axes.items():
            v = self._axis_values.get(axis, 0.0) * scale
            v = 0.0 if abs(v) < self.deadzone else float(np.clip(v, -1.0, 1.0))
            if spec.hold[dim] == "last":
                a[dim] = spec.low[dim] + (v + 1.0) / 2.0 * (spec.high[dim] - spec.low[dim])
            else:
                a[dim] = v * (spec.high[dim] if v > 0 else -spec.low[dim])
        return spec.clip(a)


# -- scripted --------------------------------------------------------------------------------------

class ScriptedDevice(TeleopDevice):
    """Plays episodes without a person: START, then one action per tick, then STOP (or DISCARD).

    actions: a list of (T, A) sequences, one per episode, or a path to a ``.npy`` (E, T, A) or
    ``.npz`` (one array per episode); or ``expert=True``: the task's scripted expert acting on the
    robot's simulator (``robot.env``) until the robot ends the episode or ``max_steps``.
    episodes: how many (None: every given sequence once; with the expert: forever).
    repeat: cycle through the given sequences forever. discard: episode indices to DISCARD.
    idle_ticks: ticks without a command between episodes. The robot may end an episode first
    (the loop then stops it); the device moves on to the next one. Defaults: conf/teleop/scripted.yaml.
    """

    def __init__(self, actions, expert: bool, episodes: int | None, repeat: bool, discard: Sequence[int],
                 idle_ticks: int, max_steps: int | None, seed: int):
        if (actions is None) == (not expert):
            raise ConfigError("The scripted device needs either teleop.actions=<file.npy> or teleop.expert=true.")
        self.sequences = None if actions is None else _load_sequences(actions)
        self.expert_mode = bool(expert)
        self.n_episodes = episodes if episodes is not None else (None if expert or repeat else len(self.sequences))
        self.discard = {int(i) for i in discard}
        self.idle_ticks, self.max_steps, self.seed = int(idle_ticks), max_steps, int(seed)
        self.episode = 0
        self._idle = 0
        self._step: int | None = None  # None: between episodes
        self._expert = None
        self._robot = None

    def open(self, robot, task=None) -> None:
        super().open(robot, task)
        if self.expert_mode:
            env = getattr(robot, "env", None)  # SimRobot's environment; a real robot has none
            if env is None or task is None:
                raise ConfigError("teleop.expert=true replays the task's scripted expert, which needs the simulated robot; "
                                  "use robot=sim or give teleop.actions=<file.npy>.")
            self._robot = robot
            self._expert = task.make_expert(np.random.default_rng(self.seed))
        else:
            bad = [s.shape for s in self.sequences if s.ndim != 2 or s.shape[1] != self.action_spec.dim]
            if bad:
                raise ConfigError(f"teleop.actions has sequences of shape {bad[0]} but the robot takes "
                                  f"{self.action_spec.dim}-dimensional actions; give (T, {self.action_spec.dim}) arrays.")

    def read(self, obs, recording: bool) -> TeleopInput:
        if self._step is not None and not recording:  # the robot ended the episode
            self._next_episode()
        if self._step is None:
            if self.n_episodes is not None and self.episode >= self.n_episodes:
                return TeleopInput(None, (QUIT,))
            if self._idle < self.idle_ticks:
                self._idle += 1
                return TeleopInput(None)
            self._step = 0
            if self._expert is not None:
                self._expert.reset()
            return TeleopInput(None, (START,))
        if self._finished():
            ev = DISCARD if self.episode in self.discard else STOP
            self._next_episode()
            return TeleopInput(None, (ev,))
        a = self._action(obs)
        self._step += 1
        return TeleopInput(self.action_spec.clip(a))

    def _finished(self) -> bool:
        if self.expert_mode:
            return self.max_steps is not None and self._step >= self.max_steps
        seq = self.sequences[self.episode % len(self.sequences)]
        return self._step >= min(len(seq), self.max_steps or len(seq))

    def _action(self, obs) -> np.ndarray:
        if self.expert_mode:
            return self._expert.act(obs, self._robot.env)
        return self.sequences[self.episode % len(self.sequences)][self._step]

    def _next_episode(self) -> None:
        self.episode += 1
        self._step = None
        self._idle = 0


def _load_sequences(actions) -> list[np.ndarray]:
    if isinstance(actions, (str, os.PathLike)):
        path = str(actions)
        if not os.path.exists(path):
            raise ConfigError(f"teleop.actions={path} does not exist; save the action sequences with numpy.save first.")
        loaded = np.load(path)
        seqs = [loaded[k] for k in loaded.files] if path.endswith(".npz") else list(loaded)
    else:
        seqs = list(actions)
    if not seqs:
        raise ConfigError("teleop.actions holds no episodes; give at least one (T, A) action sequence.")
    return [np.asarray(s, np.float32) for s in seqs]
