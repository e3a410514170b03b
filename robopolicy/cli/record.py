"""``robopolicy-record``: record demonstrations by teleoperation into an episode store.

    robopolicy-record robot=sim task=planar_push out=data/teleop.zarr          # keyboard, simulated robot
    robopolicy-record robot=myarm teleop=joystick out=data/myarm.zarr
    robopolicy-record teleop=scripted teleop.expert=true teleop.episodes=5 out=data/sim.zarr

The loop runs on the project's fixed-rate clock. Each tick: read the robot, read the device, act
on its events (start / stop + save / discard / quit), and send either the device's command (while
recording) or the robot's hold action (between episodes). A finished episode is appended with the
store's atomic ``append_episode`` right after the hold action is sent (the append may take longer
than a period; the clock then skips the missed ticks), so a kill loses at most the episode in
progress, never a saved one. ``obs[t]`` is the observation before ``action[t]``, the action actually
sent (as returned by ``send_action``); reward and success come from the robot's status.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np
from omegaconf import DictConfig, OmegaConf

from robopolicy.cli._hydra import hydra_command
from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import DataError
from robopolicy.runtime.clock import FixedRateClock
from robopolicy.runtime.recorder import EpisodeRecorder
from robopolicy.runtime.robot import Robot
from robopolicy.runtime.teleop import DISCARD, QUIT, START, STOP, TeleopDevice

log = logging.getLogger("robopolicy.record")


@dataclasses.dataclass
class RecordSummary:
    saved: int = 0
    discarded: int = 0
    steps_saved: int = 0
    ticks: int = 0
    overruns: int = 0
    elapsed_s: float = 0.0
    stop_reason: str = ""
    tick_error_ms: dict = dataclasses.field(default_factory=dict)  # wake-up minus due time: p50, p99, max
    append_ms: dict = dataclasses.field(default_factory=dict)      # time of each atomic append: p50, max


def _percentiles_ms(xs_s: list[float], qs=(50, 99, 100)) -> dict:
    names = {50: "p50", 99: "p99", 100: "max"}
    return {names[q]: float(np.percentile(np.asarray(xs_s) * 1e3, q)) for q in qs} if xs_s else {}


class Progress:
    """One status line: episode, state, steps, measured rate, elapsed; redrawn in place on a terminal."""

    def __init__(self, stream: TextIO | None, every_s: float = 0.25):
        self.stream = stream
        self.tty = bool(stream is not None and stream.isatty())
        self.every_s = every_s
        self._last = -1.0

    def update(self, t: float, line: str, force: bool = False) -> None:
        if self.stream is None:
            return
        if self.tty and (force or t - self._last >= self.every_s):
            self.stream.write("\r\x1b[K" + line)
            self.stream.flush()
            self._last = t
        elif not self.tty and force:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def open_store(path: str | Path, spec: EnvSpec, provenance: dict) -> EpisodeRecorder:
    """An EpisodeRecorder appending to ``path`` (created with ``provenance`` if missing).

    An existing store must hold the robot's keys and action size and have been recorded at the
    same rate (its spec's ``control_hz``).
    """
    from robopolicy.data.store import EpisodeStore

    path = Path(path)
    if path.exists():
        with EpisodeStore.open(path) as existing:
            stored = existing.spec
        spec.check_compatible(stored, what="robot")
        if abs(stored.control_hz - spec.control_hz) > 1e-6:
            raise DataError(f"The store {path} holds episodes at {stored.control_hz:g} Hz but this recording runs at "
                            f"{spec.control_hz:g} Hz; record into a new store (out=...) or set rate_hz={stored.control_hz:g}.")
    else:
        EpisodeStore.create(path, spec, attrs=provenance).close()
    return EpisodeRecorder(path, spec)


def _hold_command(robot: Robot, last_sent: np.ndarray | None) -> np.ndarray | None:
    """The hold action between episodes, or None (send nothing) while no command was sent yet and
    some dim holds its last value: the robot's own state is the hold then, and zeros could move it."""
    if last_sent is None and "last" in robot.action_spec.hold:
        return None
    return robot.hold_action(last_sent)


def record(robot: Robot, device: TeleopDevice, recorder: EpisodeRecorder, rate_hz: float, *, stop_on_done: bool,
           task=None, seeds=None, max_episode_steps: int | None = None, progress: TextIO | None = None) -> RecordSummary:
    """Run the recording loop until the device quits; ``robot`` is connected. ``stop_on_done``: save
    and stop an episode when the robot reports it done; ``seeds(i)``: the reset seed of attempt i
    (None: the robot's own); ``max_episode_steps``: save and stop after this many steps (None: no
    limit). Returns counts and timing; saved episodes are in the store."""
    clock = FixedRateClock(rate_hz)
    show = Progress(progress)
    summary = RecordSummary()
    recording, attempt, steps = False, 0, 0
    last_sent: np.ndarray | None = None
    t_start = time.monotonic()
    tick_times: list[float] = []
    tick_errors_s: list[float] = []
    append_s: list[float] = []

    def line(state: str, episode: int | None = None) -> str:
        rate = (len(tick_times) - 1) / (tick_times[-1] - tick_times[0]) if len(tick_times) > 1 and tick_times[-1] > tick_times[0] else 0.0
        return (f"episode {attempt if episode is None else episode} {state:<9} steps {steps:>5}  "
                f"{rate:5.1f} Hz  elapsed {time.monotonic() - t_start:7.1f} s  saved {summary.saved} discarded {summary.discarded}")

    def save(status) -> None:
        nonlocal recording, last_sent
        # Hold first: the append (fsync'd files) can take longer than a period, and ticks are
        # skipped meanwhile, so the robot must not keep executing the episode's last command.
        if (hold := _hold_command(robot, last_sent)) is not None:
            last_sent = robot.send_action(hold)
        t0 = time.monotonic()
        if recorder.end_episode(status):
            append_s.append(time.monotonic() - t0)
            summary.saved += 1
            summary.steps_saved += steps
        recording = False
        show.update(time.monotonic(), line("saved"), force=True)

    def discard(why: str) -> None:
        nonlocal recording
        recorder.start_episode()
        summary.discarded += 1
        recording = False
        show.update(time.monotonic(), line(why), force=True)

    device.open(robot, task)
    hint = device.help()
    if hint and progress is not None:
        progress.write(hint + "\n")
    try:
        clock.start()
        while True:
            tick = clock.wait()
            summary.ticks += 1
            tick_errors_s.append(tick.error_s)
            tick_times.append(tick.actual_s)
            del tick_times[:-int(rate_hz) - 1]  # the rate over the last second
            obs, _ = robot.get_observation()
            status = robot.status() if recording else None
            if recording and ((stop_on_done and status.done) or (max_episode_steps is not None and steps >= max_episode_steps)):
                save(status)
            inp = device.read(obs, recording)
            started = False
            if QUIT in inp.events:
                if recording:
                    discard("dropped")
                summary.stop_reason = "quit"
                break
            for ev in inp.events:
                if ev == START and not recording:
                    robot.reset(None if seeds is None else seeds(attempt))
                    attempt += 1
                    recorder.start_episode()
                    recording, started, steps = True, True, 0
                    show.update(time.monotonic(), line("recording"), force=True)
                elif ev == STOP and recording:
                    save(robot.status())
                elif ev == DISCARD and recording:
                    discard("discarded")
            if recording and not started:
                command = inp.action if inp.action is not None else robot.hold_action(last_sent)
                last_sent = robot.send_action(command)
                recorder.step(obs, last_sent, status)
                steps += 1
            elif (hold := _hold_command(robot, last_sent)) is not None:
                last_sent = robot.send_action(hold)
            show.update(time.monotonic(), line("recording") if recording else line("idle", attempt + 1))
    except KeyboardInterrupt:
        summary.stop_reason = "interrupted"
        if recording:
            discard("dropped")
    finally:
        device.close()
        show.close()
    summary.overruns = clock.overruns
    summary.elapsed_s = time.monotonic() - t_start
    summary.tick_error_ms = _percentiles_ms(tick_errors_s)
    summary.append_ms = _percentiles_ms(append_s, (50, 100))
    return summary


@hydra_command("record")
def main(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from robopolicy.envs import make_task
    from robopolicy.evaluation.episodes import episode_seed

    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    task = make_task(cfg.task)
    robot = instantiate(cfg.robot, task=task, _convert_="all")
    device = instantiate(cfg.teleop, _convert_="all")
    robot_name = HydraConfig.get().runtime.choices.get("robot", "")
    rate_hz = float(cfg.rate_hz or robot.obs_spec.control_hz)
    spec = dataclasses.replace(robot.obs_spec, control_hz=rate_hz)
    provenance = {"source": "robopolicy-record", "robot": robot_name, "robot_target": str(cfg.robot.get("_target_", "")),
                  "task": task.name, "rate_hz": rate_hz, "teleop": str(cfg.teleop.get("_target_", "")),
                  "teleop_config": OmegaConf.to_container(cfg.teleop, resolve=True)}
    recorder = open_store(cfg.out, spec, provenance)
    max_steps = None if cfg.max_episode_s is None else max(1, round(float(cfg.max_episode_s) * rate_hz))
    robot.connect()
    try:
        summary = record(robot, device, recorder, rate_hz, task=task, seeds=lambda i: episode_seed(int(cfg.seed), i),
                         stop_on_done=bool(cfg.stop_on_done), max_episode_steps=max_steps,
                         progress=sys.stderr if cfg.progress else None)
    finally:
        robot.disconnect()
    print(f"saved {summary.saved} episodes ({summary.steps_saved} steps), discarded {summary.discarded}, "
          f"{summary.overruns} late ticks skipped at {rate_hz:g} Hz; store {cfg.out} now holds "
          f"{recorder.store.n_episodes} episodes")
    return dataclasses.asdict(summary)


if __name__ == "__main__":
    main()
