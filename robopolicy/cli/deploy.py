"""``robopolicy-deploy``: a trained policy on a robot at a fixed rate, with a timing report.

Loads the policy and the task from the run's saved config (``robopolicy.api.load_run``), builds the robot
from ``conf/robot/<name>.yaml`` (``robot=sim``: the task's simulator against the wall clock), runs
the real-time runner and writes ``timing.json`` + ``timing.png`` into ``<run_dir>/deploy/<stamp>/``
(or ``out=``). The policy runs in a worker thread, in a local policy-server process
(``runner.inference=process``) or on a remote server (``server=tcp://host:port``, or
``server=ws://host:port`` for an openpi-protocol endpoint); ``goal=`` (a .npz or {key: [numbers]})
is sent with every request to a goal-conditioned policy.
"""

from __future__ import annotations

import bisect
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from robopolicy.cli._hydra import hydra_command
from robopolicy.errors import ConfigError

log = logging.getLogger("robopolicy.deploy")


def _overrides(task_overrides: dict | None, sampler: dict | None) -> dict | None:
    over = {}
    if task_overrides:
        over["task"] = dict(task_overrides)
    if sampler:
        over["policy"] = {"sampler": dict(sampler)}
    return over or None


def _task_of(rc) -> tuple:
    from robopolicy.envs import make_task

    if rc.task_cfg is None:
        raise ConfigError(f"The run {rc.run_dir} has no task in its saved config; pass the task with task=<name>.")
    return make_task(rc.task_cfg), rc.task_cfg


def load_run_task(run_dir: str, checkpoint: str, task_overrides: dict):
    """The task the run was trained on (its saved config), with ``task.*`` overrides merged in."""
    from robopolicy.api import load_run_config

    return _task_of(load_run_config(run_dir, str(checkpoint), _overrides(task_overrides, None)))


def build_predictor(cfg: DictConfig, runner_cfg: dict, policy=None):
    """(predictor, closer): in-process ``policy`` (loaded here when None), local server process, or remote client."""
    from robopolicy.cli.policy_server import load_for_serving
    from robopolicy.runtime.client import PolicyClient
    from robopolicy.runtime.server import ServerProcess
    from robopolicy.runtime.worker import LocalPredictor

    sampler = OmegaConf.to_container(cfg.policy.sampler, resolve=True) if cfg.get("policy") else {}
    mode = runner_cfg["inference"]
    timeout_s = float(runner_cfg["server_timeout_s"])
    goal = cfg.get("goal")
    goal = OmegaConf.to_container(goal, resolve=True) if isinstance(goal, DictConfig) else goal
    if cfg.server and str(cfg.server).startswith("ws://"):  # openpi's websocket protocol
        from robopolicy.runtime.openpi_wire import OpenPIPredictor

        pred = OpenPIPredictor(str(cfg.server), token=cfg.token, timeout_s=timeout_s, goal=goal)
        return pred, pred.close
    if cfg.server:
        client = PolicyClient(cfg.server, token=cfg.token, timeout_s=timeout_s, goal=goal)
        return client, client.close
    if mode == "thread":
        if policy is None:
            from robopolicy.api import load_run

            policy = load_run(cfg.run_dir, str(cfg.checkpoint), _overrides(None, sampler), device=str(cfg.device)).policy
        if goal is not None:
            from robopolicy.runtime.client import read_goal
            from robopolicy.runtime.served import ServedPolicy

            return ServedPolicy(policy, torch_threads=runner_cfg.get("torch_threads"), goal=read_goal(goal)), (lambda: None)
        return LocalPredictor(policy, torch_threads=runner_cfg.get("torch_threads")), (lambda: None)
    if mode == "process":
        proc = ServerProcess(load_for_serving, {"run_dir": cfg.run_dir, "checkpoint": cfg.checkpoint, "device": cfg.device,
                                                "sampler": sampler}, token=cfg.token, torch_threads=runner_cfg.get("torch_threads"))
        client = PolicyClient(proc.endpoint, token=cfg.token, timeout_s=timeout_s, goal=goal)

        def close():
            client.close()
            proc.stop()

        return client, close
    raise ConfigError(f"Unknown runner.inference={mode!r}; use thread or process (or server=tcp://host:port).")


def episode_timing(runner) -> list[dict]:
    """Per episode of a finished run: ``late_chunks`` (re-plans whose chunk finished after the
    deadline of the tick that asked for it, so that tick played the previous chunk) and
    ``late_sends`` (ticks whose action was sent after the deadline). An episode with neither ran
    as the synchronous evaluation loop would have."""
    st = runner.stats
    budget_s = runner.cfg.deadline_frac * runner.clock.period_s
    targets = st.tick_target_s
    out = []
    for ep in st.episodes:
        a, b = ep.get("ticks", (0, 0))
        late_sends = sum(1 for i in range(a, b) if st.tick_sent_s[i] > budget_s)
        late_chunks = 0
        if b > a:
            lo, hi = targets[a], targets[b - 1] + runner.clock.period_s
            for t_done, latency_s in runner.worker.latencies:
                t_start = t_done - latency_s
                if lo <= t_start < hi:  # requested during the episode (its first chunk is awaited before)
                    asked = targets[max(a, bisect.bisect_right(targets, t_start, a, b) - 1)]  # the tick that asked
                    late_chunks += t_done > asked + budget_s
        out.append({"seed": ep["seed"], "late_chunks": int(late_chunks), "late_sends": int(late_sends)})
    return out


@hydra_command("deploy")
def main(cfg: DictConfig) -> dict:
    from hydra.utils import instantiate

    from robopolicy.runtime.recorder import EpisodeRecorder
    from robopolicy.runtime.report import write_report
    from robopolicy.runtime.runner import Runner, RunnerConfig
    from robopolicy.runtime.watchdog import EStop

    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not Path(cfg.run_dir).is_dir():
        raise ConfigError(f"run_dir={cfg.run_dir} does not exist; point it at a training run folder.")
    from robopolicy.api import load_run, load_run_config

    runner_dict = OmegaConf.to_container(cfg.runner, resolve=True)
    task_over = OmegaConf.to_container(cfg.task, resolve=True)
    sampler = OmegaConf.to_container(cfg.policy.sampler, resolve=True) if cfg.get("policy") else {}
    policy = None
    if not cfg.server and runner_dict["inference"] == "thread":  # one load gives the policy and its task
        rc = load_run(cfg.run_dir, str(cfg.checkpoint), _overrides(task_over, sampler), device=str(cfg.device))
        policy = rc.policy
    else:  # the policy is loaded by the server; only the task is needed here
        rc = load_run_config(cfg.run_dir, str(cfg.checkpoint), _overrides(task_over, None))
    task, task_cfg = _task_of(rc)
    predictor, close_predictor = build_predictor(cfg, runner_dict, policy=policy)
    if runner_dict.get("action_dt_s") is None:
        runner_dict["action_dt_s"] = 1.0 / float(cfg.robot.get("control_hz") or task.spec.control_hz)
    runner_cfg = RunnerConfig.from_mapping(runner_dict)
    robot = instantiate(cfg.robot, task=task, _convert_="all")
    out = Path(cfg.out) if cfg.out else Path(cfg.run_dir) / "deploy" / time.strftime("%Y-%m-%d_%H-%M-%S")
    estop = EStop(signal_name=cfg.estop_signal, file_path=cfg.estop_file, key=cfg.estop_key)
    recorder = EpisodeRecorder(cfg.record, robot.obs_spec, provenance={"run_dir": str(cfg.run_dir)}) if cfg.record else None
    robot.connect()
    try:
        runner = Runner(robot, predictor, runner_cfg, estop=estop, recorder=recorder)
        log.info("running at %.1f Hz for %s s (episodes: %s); e-stop: kill -%s %d%s", runner_cfg.rate_hz,
                 runner_cfg.duration_s or "unlimited", runner_cfg.episodes or "unlimited", cfg.estop_signal,
                 __import__("os").getpid(), f", or create {cfg.estop_file}" if cfg.estop_file else "")
        runner.run()
    finally:
        robot.disconnect()
        estop.close()
        close_predictor()
    rep = write_report(runner, out, extra={"run_dir": str(cfg.run_dir), "task": str(task_cfg.get("name", "")),
                                           "robot": cfg.robot.get("_target_"), "server": cfg.server,
                                           "inference": cfg.runner.get("inference", "thread"),
                                           "episode_timing": episode_timing(runner)}, plot=cfg.plot)
    pe = rep["period_error_ms"]
    print(f"period error ms p50 {pe['p50']:.3f} p99 {pe['p99']:.3f} p99.9 {pe['p99.9']:.3f} max {pe['max']:.3f}; "
          f"deadline misses {rep['deadline_misses']}; stale executed {rep['stale_actions_executed']}; "
          f"watchdog trips {rep['watchdog_trips']}; episodes {rep['episodes']} successes {rep['successes']}; "
          f"stop: {rep['stop_reason']}; report {out / 'timing.json'}")
    return rep


if __name__ == "__main__":
    main()
