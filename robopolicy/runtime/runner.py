"""The real-time control runner: fixed-rate loop, off-thread inference, merged timestamped chunks,
safety layer, watchdog, e-stop and recording.

One tick (all on the control thread, none of it waits for the policy)::

    wake on the grid -> e-stop? -> obs = robot.get_observation() -> episode over?
    -> give obs to the worker (+ ask for a chunk when due) -> take finished chunks
    -> watchdog (fresh chunks?) -> action for this tick from the buffer (or hold)
    -> safety layer -> robot.send_action -> record

Episodes follow the shared protocol (:mod:`robopolicy.evaluation.episodes`): ``robot.reset(seed * 10000 + i)``
(the seed blocks, so ``seed=s`` runs the episodes ``robopolicy-eval seed=s`` runs), and each one is
reported as an ``EpisodeRecord`` dict in ``RunStats.episodes``. The first chunk is awaited with the robot at rest (its
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
from robopolicy.evaluation.episodes import SEED_BLOCK, EpisodeRecord, episode_seed, episode_seeds
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
    """The runner's settings: the fields of conf/runner/default.yaml, where every value and its meaning live.

    No field has a default here (the YAML is the one place): a Hydra command passes its composed
    ``runner`` section to :meth:`from_mapping`; Python callers start from the file with
    :meth:`from_defaults`. ``inference`` and ``server_timeout_s`` choose and configure the predictor
    (robopolicy-deploy); the loop itself does not read them.
    """

    rate_hz: float
    duration_s: float
    episodes: int
    seed: int
    inference: str
    merge: str
    new_weight: float
    ensemble_m: float
    action_dt_s: float | None
    action_offset: float
    replan_every: int
    wait_for_chunk_s: float
    rtc: bool
    hold_after_s: float | None
    stop_after_s: float | None
    first_chunk_timeout_s: float
    spin_s: float
    deadline_frac: float
    gil_switch_interval_s: float | None
    control_cpu: int | None
    worker_cpu: int | None
    realtime_priority: int | None
    torch_threads: int | None
    server_timeout_s: float
    safety: dict

    @classmethod
    def from_defaults(cls, name: str = "default", **overrides: Any) -> "RunnerConfig":
        """conf/runner/<name>.yaml with ``overrides`` merged over it (give ``rate_hz``, ``duration_s`` and
        ``seed``: the file takes them from the command's top level)."""
        from omegaconf import OmegaConf

        from robopolicy.defaults import group_config

        return cls.from_mapping(OmegaConf.to_container(group_config("runner", name, overrides)))

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> "RunnerConfig":
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"Unknown runner setting(s) {unknown}; the runner takes {sorted(known)}.")
        missing = [k for k in known if k not in d]
        if missing:
            raise ConfigError(f"Runner setting(s) {missing} missing; start from conf/runner/default.yaml "
                              "(RunnerConfig.from_defaults(...)) instead of writing the settings out.")
        cfg = cls(**{k: d[k] for k in known})
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
    tick_checked_s: list = field(default_factory=list)  # when the watchdog judged each tick (clock time)
    held: int = 0
    held_at_s: list = field(default_factory=list)  # due times of the ticks that sent the hold action
    starved: int = 0  # ticks with no planned action although the watchdog was OK
    deadline_misses: int = 0
    overruns: int = 0
    episodes: list = field(default_factory=list)  # EpisodeRecord.to_dict() per episode
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
            episode_seeds(self.cfg.seed, self.cfg.episodes or 1)  # a bad seed or count stops here, before anything moves
            while self.cfg.episodes == 0 or i < self.cfg.episodes:
                if i == SEED_BLOCK:  # an unlimited run: its seed block is used up
                    self.stats.stop_reason = f"{SEED_BLOCK} episodes (one seed block; start another run with the next seed)"
                    break
                if not self._episode(episode_seed(self.cfg.seed, i), t_end):
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
        stopped_by = None  # why the run stopped during this episode, None while the robot runs it
        status = robot.status()
        while True:
            tick = self.clock.wait()
            if self.estop is not None and self.estop.triggered:
                st.stop_reason = f"e-stop ({self.estop.reason})"
                st.stop_latency_s = now() - (self.estop.t_triggered or now())
                keep_going, stopped_by = False, "e-stop"
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
            t_checked = now()
            state = self.watchdog.check(t_checked)
            if state is WatchState.STOP:
                st.stop_reason = "watchdog"
                keep_going, stopped_by = False, "watchdog"
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
            st.tick_checked_s.append(t_checked)
            st.tick_error_s.append(tick.error_s)
            st.tick_sent_s.append(t_sent - tick.target_s)
            if t_sent - tick.target_s > self.cfg.deadline_frac * self.clock.period_s or tick.skipped:
                st.deadline_misses += 1
            if self.recorder is not None:
                self.recorder.step(obs, sent, status)
            if t_sent >= t_end:
                st.stop_reason = "duration"
                keep_going, stopped_by = False, "duration"
                status = robot.status()
                break
        self._end_episode(seed, status, stopped_by, first_tick)
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

    def _end_episode(self, seed: int, status, stopped_by: str | None, first_tick: int = 0) -> None:
        """Record the episode: it ended because the robot said so (done_reason "success" or "robot"),
        or because the run stopped during it (``stopped_by``: "duration", "e-stop" or "watchdog").
        ``ticks``: [first, end) indices of this episode's entries in the per-tick records."""
        if status.done:
            reason = "success" if status.success else "robot"
        else:
            reason = stopped_by or "robot"
        record = EpisodeRecord(int(seed), bool(status.success), int(status.steps), float(status.reward), reason)
        self.stats.episodes.append({**record.to_dict(), "ticks": [first_tick, len(self.stats.tick_target_s)]})
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

