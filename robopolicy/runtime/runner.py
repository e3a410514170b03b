"""The real-time control runner: fixed-rate loop, off-thread inference, merged timestamped chunks,
safety layer, watchdog, e-stop and recording.

One tick (all on the control thread, none of it waits for the policy)::

    wake on the grid -> e-stop? -> obs = robot.get_observation() -> episode over?
    -> give obs to the worker (+ ask for a chunk when due) -> take finished chunks
    -> watchdog (fresh chunks?) -> action for this tick from the buffer (or hold)
    -> safety layer -> robot.send_action -> record

Episodes: ``robot.reset(seed * 10000 + i)`` (the evaluation's seed blocks, so ``seed=s`` runs the episodes ``robopolicy-eval seed=s`` runs), then the first chunk is awaited with the robot at rest (its
reset observation stays current, so that chunk is re-timed to start at the first tick), then the
clock starts. Reset and the first inference are outside the timed loop and not counted as misses.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from robopolicy.errors import ConfigError
from robopolicy.evaluation.rollout import SEED_BLOCK
from robopolicy.runtime.chunks import ActionBuffer
from robopolicy.runtime.clock import FixedRateClock, now
from robopolicy.runtime.recorder import EpisodeRecorder
from robopolicy.runtime.robot import Robot
from robopolicy.runtime.safety import SafetyLayer
from robopolicy.runtime.threads import set_realtime, set_thread_cpu
from robopolicy.runtime.watchdog import EStop, Watchdog, WatchState
from robopolicy.runtime.worker import InferenceWorker, Predictor

log = logging.getLogger(__name__)


@dataclass
class RunnerConfig:
    """See conf/runner/default.yaml for the meaning of every field."""

    rate_hz: float = 50.0
    duration_s: float = 60.0
    episodes: int = 0
    seed: int = 0
    merge: str = "latest"
    new_weight: float = 0.5
    ensemble_m: float = 0.01
    action_dt_s: float | None = None
    action_offset: float = 0.0
    replan_every: int = 0
    wait_for_chunk_s: float = 0.0
    rtc: bool = False
    hold_after_s: float | None = 0.2
    stop_after_s: float | None = 1.0
    first_chunk_timeout_s: float = 120.0
    spin_s: float = 0.0005
    deadline_frac: float = 0.5
    gil_switch_interval_s: float | None = 0.0005
    control_cpu: int | None = None
    worker_cpu: int | None = None
    realtime_priority: int | None = None
    torch_threads: int | None = 1
    safety: dict = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> "RunnerConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"Unknown runner setting(s) {unknown}; the runner takes {sorted(known)}.")
        cfg = cls(**{k: v for k, v in d.items()})
        if cfg.rate_hz <= 0 or cfg.duration_s < 0 or cfg.episodes < 0:
            raise ConfigError("rate_hz must be positive and duration_s / episodes non-negative (0 = no limit).")
        if cfg.duration_s == 0 and cfg.episodes == 0:
            raise ConfigError("Give duration_s or runner.episodes (or both); with neither the runner would never stop.")
        replan_s = cfg.replan_every / cfg.rate_hz if cfg.replan_every > 0 else 0.0
        # null deadlines follow the re-plan period: a chunk only arrives every replan_every ticks,
        # so a watchdog shorter than that would hold between two healthy chunks.
        if cfg.hold_after_s is None:
            cfg.hold_after_s = max(0.2, 1.5 * replan_s)
        if cfg.stop_after_s is None:
            cfg.stop_after_s = max(1.0, 3.0 * replan_s)
        if not 0 < cfg.hold_after_s <= cfg.stop_after_s:
            raise ConfigError("runner.hold_after_s must be positive and at most runner.stop_after_s.")
        if cfg.hold_after_s <= replan_s:
            raise ConfigError(f"runner.hold_after_s={cfg.hold_after_s} s is not longer than the re-plan period "
                              f"{replan_s:.3f} s (replan_every / rate_hz), so the watchdog would hold between chunks; "
                              "raise it or set runner.hold_after_s=null to derive it.")
        return cfg


@dataclass
class RunStats:
    """Raw per-tick and per-episode records; report.py turns them into figures."""

    rate_hz: float
    tick_target_s: list = field(default_factory=list)
    tick_error_s: list = field(default_factory=list)
    tick_sent_s: list = field(default_factory=list)  # send completed, relative to the target
    held: int = 0
    held_at_s: list = field(default_factory=list)  # due times of the ticks that sent the hold action
    starved: int = 0  # ticks with no planned action although the watchdog was OK
    deadline_misses: int = 0
    overruns: int = 0
    episodes: list = field(default_factory=list)  # {"seed", "success", "steps", "reward", "done"}
    stop_reason: str = ""
    stop_latency_s: float | None = None
    inference_errors: int = 0
    last_inference_error: str | None = None


class Runner:
    def __init__(self, robot: Robot, predictor: Predictor, cfg: RunnerConfig, estop: EStop | None = None,
                 recorder: EpisodeRecorder | None = None):
        self.robot = robot
        self.cfg = cfg
        action_spec = robot.action_spec
        self.policy_dt_s = float(cfg.action_dt_s or 1.0 / robot.obs_spec.control_hz)
        self.clock = FixedRateClock(cfg.rate_hz, spin_s=cfg.spin_s)
        self.buffer = ActionBuffer(self.clock.period_s, cfg.merge, cfg.new_weight, cfg.ensemble_m)
        safety = dict(cfg.safety or {})
        workspace = safety.get("workspace") or robot.obs_spec.extra.get("workspace")
        self.safety = SafetyLayer(action_spec.low, action_spec.high, safety.get("max_delta"), workspace)
        self.watchdog = Watchdog(cfg.hold_after_s, cfg.stop_after_s)
        self.worker = InferenceWorker(predictor, self.policy_dt_s, cfg.action_offset, cpu=cfg.worker_cpu)
        self.estop = estop
        self.recorder = recorder
        self.stats = RunStats(rate_hz=cfg.rate_hz)
        self._rtc_warned = False
        self._latency_est_s = 0.0

    # -- public ---------------------------------------------------------------------------------
    def run(self) -> RunStats:
        """Run episodes until duration_s, the episode count, an e-stop or a watchdog stop."""
        t_end = now() + self.cfg.duration_s if self.cfg.duration_s > 0 else math.inf
        i = 0
        old_switch = sys.getswitchinterval()
        if self.cfg.gil_switch_interval_s:
            # A thread waiting for the GIL gets it after at most this long (Python's default is 5 ms,
            # which would make the control thread that late whenever the worker runs Python code).
            sys.setswitchinterval(self.cfg.gil_switch_interval_s)
        set_thread_cpu(self.cfg.control_cpu)
        set_realtime(self.cfg.realtime_priority)
        try:
            while self.cfg.episodes == 0 or i < self.cfg.episodes:
                if not self._episode(self.cfg.seed * SEED_BLOCK + i, t_end):
                    break
                i += 1
            else:
                self.stats.stop_reason = "episodes"
        finally:
            self._shutdown()
            sys.setswitchinterval(old_switch)
        self.stats.overruns = self.clock.overruns
        self.stats.inference_errors = self.worker.errors
        self.stats.last_inference_error = self.worker.last_error
        return self.stats

    # -- one episode ----------------------------------------------------------------------------
    def _episode(self, seed: int, t_end: float) -> bool:
        """Run one episode; False when the whole run must stop."""
        robot, st = self.robot, self.stats
        robot.reset(seed)
        self.worker.new_episode(seed)
        self.safety.reset()
        if self.recorder is not None:
            self.recorder.start_episode()
        obs, t_obs = robot.get_observation()
        self.worker.observe(obs, t_obs)
        self.worker.request()
        first = self._await_first_chunk()
        first_tick = len(st.tick_target_s)
        if first is None:
            return False
        self.clock.start()
        t0 = self.clock.t0
        self.buffer.set_grid(t0, 0)
        first.t0_s, first.t_obs_s = t0 + self.cfg.action_offset * first.dt_s, t0  # robot was at rest
        self.buffer.add(first)
        self.watchdog.arm(t0)
        requested_at = 0
        keep_going = True
        status = robot.status()
        while True:
            tick = self.clock.wait()
            if self.estop is not None and self.estop.triggered:
                st.stop_reason = f"e-stop ({self.estop.reason})"
                st.stop_latency_s = now() - (self.estop.t_triggered or now())
                keep_going = False
                break
            obs, t_obs = robot.get_observation()
            status = robot.status()
            if status.done:
                break
            self.worker.observe(obs, t_obs)
            due = self.cfg.replan_every <= 0 or tick.index - requested_at >= self.cfg.replan_every
            if due and not self.worker.busy:
                self.worker.request(self._rtc_prefix(t_obs))
                requested_at = tick.index
                if self.cfg.wait_for_chunk_s > 0:
                    self.worker.wait_for_chunk(min(self.cfg.wait_for_chunk_s, tick.target_s + self.clock.period_s * self.cfg.deadline_frac - now()))
            for chunk in self.worker.collect():
                self.buffer.add(chunk)  # NaN/inf actions in it are replaced by the hold action in the safety layer
                self.watchdog.feed(now(), chunk.actions)  # ... and such a chunk is a fault, not a fresh one
                self._latency_est_s = max(chunk.latency_s, 0.8 * self._latency_est_s)
            state = self.watchdog.check(now())
            if state is WatchState.STOP:
                st.stop_reason = "watchdog"
                keep_going = False
                break
            planned = self.buffer.pop(tick.index, tick.target_s)
            if state is WatchState.HOLD or planned is None:
                if state is WatchState.OK:
                    st.starved += 1
                st.held += 1
                st.held_at_s.append(tick.target_s)
                self.safety.count("hold")
                planned = None
            hold = robot.hold_action(self.safety.last_safe)
            safe, _ = self.safety.apply(planned, obs, hold)
            sent = robot.send_action(safe)
            t_sent = now()
            st.tick_target_s.append(tick.target_s)
            st.tick_error_s.append(tick.error_s)
            st.tick_sent_s.append(t_sent - tick.target_s)
            if t_sent - tick.target_s > self.cfg.deadline_frac * self.clock.period_s or tick.skipped:
                st.deadline_misses += 1
            if self.recorder is not None:
                self.recorder.step(obs, sent, status)
            if t_sent >= t_end:
                st.stop_reason = "duration"
                keep_going = False
                status = robot.status()
                break
        self._end_episode(seed, status, first_tick)
        return keep_going

    def _await_first_chunk(self):
        """Wait (robot at rest) for the episode's first chunk; polls the e-stop every period.

        A failed request (a policy error, a server that is slow on its first call or restarting)
        is asked again as soon as the worker is idle, until first_chunk_timeout_s.
        """
        deadline = now() + self.cfg.first_chunk_timeout_s
        while now() < deadline:
            if self.estop is not None and self.estop.triggered:
                self.stats.stop_reason = f"e-stop ({self.estop.reason})"
                return None
            if self.worker.wait_for_chunk(self.clock.period_s):
                chunks = self.worker.collect()
                if chunks:
                    return chunks[-1]
            # Ask again only when the request failed: idle and no chunk. A chunk that finished just
            # after the wait timed out is taken at the next pass (asking again would sample twice
            # for one observation, and the second chunk would replace the first mid-episode).
            if not self.worker.busy and not self.worker.wait_for_chunk(0.0):
                self.worker.request()
        self.stats.stop_reason = "no first action (policy failed or too slow; see the log)"
        log.error("no action within first_chunk_timeout_s=%.1f s", self.cfg.first_chunk_timeout_s)
        return None

    def _rtc_prefix(self, t_obs: float) -> np.ndarray | None:
        """Real-time chunking: the actions that will execute while the next chunk is computed."""
        if not self.cfg.rtc:
            return None
        if not getattr(self.worker.predictor, "supports_prefix", False) and not self._rtc_warned:
            log.warning("runner.rtc: the policy's sample() takes no prefix_actions, so committed actions are "
                        "frozen in the new chunk instead of being inpainted")
            self._rtc_warned = True
        n = max(1, math.ceil(self._latency_est_s / self.policy_dt_s) + 1)
        return self.buffer.committed(t_obs, self.policy_dt_s, n)

    def _end_episode(self, seed: int, status, first_tick: int = 0) -> None:
        # ticks: [first, end) indices of this episode's entries in the per-tick records
        self.stats.episodes.append({"seed": seed, "success": bool(status.success), "steps": int(status.steps),
                                    "reward": float(status.reward), "done": bool(status.done),
                                    "ticks": [first_tick, len(self.stats.tick_target_s)]})
        if self.recorder is not None:
            t = time.monotonic()
            self.recorder.end_episode(status)
            log.info("episode recorded in %.3f s", time.monotonic() - t)

    def _shutdown(self) -> None:
        """Leave the robot holding still, stop the worker."""
        try:
            self.robot.send_action(self.robot.hold_action(self.safety.last_safe))
        except Exception:  # noqa: BLE001 - shutting down; the robot may already be gone
            log.exception("could not send the final hold action")
        self.worker.close(timeout_s=0.5)

