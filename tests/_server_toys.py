"""Deterministic toy policies for the policy-server tests: goal-conditioned, and V-GPS-steered
through the real :class:`~robopolicy.value.vgps.ValueGuidedPolicy` with a known critic.

They run on ``tests/_eval_toys.PointTask`` (state = [pos, env goal], 10 Hz, 12 steps).
"""

from __future__ import annotations

import numpy as np
import torch

from robopolicy.defaults import group_node
from robopolicy.policies.base import Policy
from robopolicy.value.vgps import ValueGuidedPolicy


def _greedy(obs, gain: float) -> torch.Tensor:
    s = torch.as_tensor(np.asarray(obs["state"]))[:, -1].float()  # (B, 4)
    return (gain * (s[:, 2:] - s[:, :2])).clamp(-0.1, 0.1)  # (B, 2)


class GoalBiasPolicy(Policy):
    """Goal-conditioned toy: moves toward the env goal, shifted by ``goal["state"][:2]`` (a zero
    goal succeeds like the greedy policy, a far one fails). No goal: the null goal (zero shift)."""

    def __init__(self, spec, gain: float = 0.5):
        super().__init__(spec, ["state"], obs_horizon=2, action_horizon=8, exec_horizon=4)
        self.goal_keys = ["state"]
        self.gain = gain
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def compute_loss(self, batch):  # pragma: no cover - not trained
        raise NotImplementedError

    def sample(self, obs, n=1, goal=None):
        a = _greedy(obs, self.gain)
        if goal is not None:
            a = (a + torch.tensor(np.array(goal["state"]), dtype=torch.float32)[:, :2]).clamp(-0.1, 0.1)
        T = self.action_horizon - self.obs_horizon + 1
        return a[:, None, None, :].expand(-1, n, T, -1).clone()


class CandidatePolicy(Policy):
    """Sample j is the greedy chunk plus a fixed offset ``OFFSETS[j % 8]``; only j % 8 == 7 has none,
    so unsteered (n=1) it drifts, and a critic that knows the greedy action recovers it."""

    OFFSETS = torch.tensor([[0.04, 0.04], [-0.04, 0.04], [0.04, -0.04], [-0.04, -0.04],
                            [0.06, 0.0], [0.0, 0.06], [-0.06, 0.0], [0.0, 0.0]])

    def __init__(self, spec, gain: float = 0.5):
        super().__init__(spec, ["state"], obs_horizon=2, action_horizon=8, exec_horizon=4)
        self.gain = gain
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def compute_loss(self, batch):  # pragma: no cover - not trained
        raise NotImplementedError

    def sample(self, obs, n=1, goal=None):
        a = _greedy(obs, self.gain)  # (B, 2)
        off = self.OFFSETS[torch.arange(n) % len(self.OFFSETS)]  # (n, 2)
        T = self.action_horizon - self.obs_horizon + 1
        return (a[:, None, :] + off[None]).clamp(-0.1, 0.1)[:, :, None, :].expand(-1, -1, T, -1).clone()


class GreedyCritic(torch.nn.Module):
    """Scores a chunk by minus the distance of its first action from the greedy one: (B, K)."""

    def __init__(self, spec, gain: float = 0.5):
        super().__init__()
        self.spec, self.obs_keys, self.goal_keys = spec, ["state"], []
        self.obs_horizon, self.chunk_len, self.gain = 2, 1, gain

    def score(self, obs, actions, goal=None):
        a = torch.as_tensor(actions)[:, :, 0, :]  # (B, K, A)
        return -(a - _greedy(obs, self.gain)[:, None, :]).norm(dim=-1)


def make_vgps_toy(spec, k: int = 8) -> ValueGuidedPolicy:
    return ValueGuidedPolicy(CandidatePolicy(spec), GreedyCritic(spec), k=k)


def goal_toy_factory(max_steps: int = 12):
    """ServerProcess factory (importable by name)."""
    from _eval_toys import PointTask

    return GoalBiasPolicy(PointTask(max_steps).spec)


PHASE = 0.9  # SimRobot steps 0.9 period after a tick, so a chunk may take up to DEADLINE_FRAC of a period
SLOW_HZ = 5.0  # slow motion: the PointTask's steps are unchanged, but a 200 ms period leaves a loaded
# CI machine 170 ms to deliver each chunk (at the task's own 10 Hz a stall of 85 ms changed an outcome)


def slow_sim_robot(task):
    """The task as a SimRobot stepped at SLOW_HZ (pair with ``eval_match``)."""
    from robopolicy.runtime.sim_robot import SimRobot

    return SimRobot.from_defaults(lambda: task.make_env(), task.spec, control_hz=SLOW_HZ, phase=PHASE)


def run_eval_match(predictor, task, episodes: int, seed: int):
    """The runner on ``slow_sim_robot(task)`` through ``predictor`` with the ``eval_match`` settings; closes
    both and returns the runner's stats."""
    from robopolicy.runtime.runner import Runner, RunnerConfig

    robot = slow_sim_robot(task)
    robot.connect()
    runner = Runner(robot, predictor, RunnerConfig.from_defaults(**eval_match(episodes, seed)))
    try:
        runner.run()
    finally:
        robot.disconnect()
        predictor.close()
    return runner.stats


def eval_match(episodes: int, seed: int, rate_hz: float = SLOW_HZ) -> dict:
    """Runner settings of conf/runner/eval_match.yaml for the toys (exec_horizon 4), at the slow-motion
    rate of ``slow_sim_robot`` and with a late deadline (85 % of the period), so every chunk arrives
    before the simulator's next step and the runner reproduces the synchronous evaluation. The
    policy's actions are spaced one slow-motion step apart (``action_dt_s``, as robopolicy-deploy
    sets it from robot.control_hz); at the task's 0.1 s the runner would play every second action."""
    return {"rate_hz": rate_hz, "action_dt_s": 1.0 / rate_hz, "duration_s": 0, "episodes": episodes, "seed": seed, "replan_every": 4,
            "wait_for_chunk_s": 0.5, "deadline_frac": 0.85, "hold_after_s": None, "stop_after_s": None,
            "first_chunk_timeout_s": 30.0}


def make_goal_beso_run(run_dir, max_episode_steps: int = 20):
    """An untrained tiny goal-conditioned BESO run on the multimodal task, as robopolicy-train writes it."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.data.normalize import Normalizer
    from robopolicy.envs import make_task
    from robopolicy.policies.build import build_policy
    from robopolicy.training.checkpoint import (
        set_latest,
        state_dict_for_safetensors,
        write_checkpoint,
    )

    cfg = OmegaConf.create({"task": OmegaConf.load(CONF_DIR / "task" / "multimodal.yaml"),
                            "policy": group_node("policy", "beso"),
                            "net": OmegaConf.load(CONF_DIR / "net" / "mlp.yaml")})
    cfg.task.max_episode_steps = max_episode_steps
    cfg.policy.goal_keys = ["state"]
    cfg.net.hidden_dims = [32, 32]
    cfg.net.t_embed_dim = 16
    OmegaConf.resolve(cfg)
    spec = make_task(cfg.task).spec
    rng = np.random.default_rng(0)
    data = {"state": rng.normal(size=(64, *spec.obs["state"].shape)).astype(np.float32),
            "action": rng.uniform(spec.action_low, spec.action_high, size=(64, spec.action_dim)).astype(np.float32)}
    torch.manual_seed(0)
    policy = build_policy(cfg, spec, Normalizer.fit(data, {k: "minmax" for k in data}))
    root = Path(run_dir) / "checkpoints"
    write_checkpoint(root, 1, {"model.safetensors": state_dict_for_safetensors(policy), "config.yaml": OmegaConf.to_yaml(cfg),
                               "spec.json": spec.to_dict(), "meta.json": {"step": 1, "metrics": {}, "ema": False}})
    set_latest(root, 1)
    return Path(run_dir)


def make_critic_run(tmp, steps: int = 2):
    """A critic run (robopolicy-train-critic, a few steps) on random multimodal episodes; -> run dir."""
    from hydra import compose, initialize_config_dir

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.data.store import EpisodeStore
    from robopolicy.envs import make_task
    from robopolicy.value.train import train_critic

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        spec = make_task(compose("train_critic", overrides=["task=multimodal", "dataset=x", "run_dir=x"]).task).spec
    rng = np.random.default_rng(0)
    store = EpisodeStore.create(tmp / "mm.zarr", spec)
    for i in range(6):
        T = 20
        success = np.zeros(T, bool)
        success[-2:] = i % 2 == 0
        store.append_episode({"state": rng.normal(size=(T, 6)).astype(np.float32),
                              "action": rng.uniform(-1, 1, (T, 2)).astype(np.float32),
                              "reward": success.astype(np.float32), "success": success, "done": success.copy()})
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train_critic", overrides=["task=multimodal", f"dataset={tmp / 'mm.zarr'}", f"run_dir={tmp / 'q'}",
                                                 f"steps={steps}", "batch_size=8", "wandb.mode=disabled", "progress=false",
                                                 "device=cpu", "critic.hidden_dims=[16,16]", "val_fraction=0.2"])
    train_critic(cfg)
    return tmp / "q"
