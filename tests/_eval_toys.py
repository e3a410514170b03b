"""A tiny deterministic task and policy for the evaluation tests (importable by subprocess workers)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from robopolicy.defaults import group_node
from robopolicy.envs.base import Expert, Task
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.policies.base import Policy


class PointEnv(gym.Env):
    """A point in the plane moving toward a goal; start and goal are drawn from the reset seed.

    Succeeds within 0.02 of the goal, terminates when it leaves the box |x| > 1.5, and reports
    ``info["mode"]`` ("left"/"right": the side of the goal). ``render()`` draws an 8x8 picture.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, max_steps: int = 12, render_mode: str | None = None):
        self.observation_space = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)})
        self.action_space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)
        self.max_steps = max_steps
        self.render_mode = render_mode

    def _obs(self):
        return {"state": np.concatenate([self.pos, self.goal]).astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2)
        self.goal = self.np_random.uniform(-1, 1, 2)
        self.t = 0
        return self._obs(), {"success": False, "mode": "left" if self.goal[0] < 0 else "right"}

    def step(self, action):
        self.t += 1
        self.pos = self.pos + np.clip(np.asarray(action, dtype=np.float64), -0.1, 0.1)
        dist = float(np.linalg.norm(self.pos - self.goal))
        success = dist < 0.02
        terminated = bool(np.abs(self.pos).max() > 1.5)
        truncated = self.t >= self.max_steps
        info = {"success": success, "mode": "left" if self.goal[0] < 0 else "right"}
        return self._obs(), -dist, terminated, truncated, info

    def render(self):
        img = np.zeros((8, 8, 3), dtype=np.uint8)
        i, j = (np.clip((self.pos + 1.5) / 3.0 * 8, 0, 7)).astype(int)
        img[i, j] = 255
        return img


class PointTask(Task):
    name = "point"

    def __init__(self, max_steps: int = 12):
        self.max_steps = max_steps

    @property
    def spec(self) -> EnvSpec:
        return EnvSpec(obs={"state": ObsKeySpec((4,))}, action_dim=2, action_low=(-0.1,) * 2, action_high=(0.1,) * 2,
                       max_episode_steps=self.max_steps, control_hz=10.0, name="point")

    def make_env(self, render=None):
        return PointEnv(self.max_steps, render_mode="rgb_array")

    def make_expert(self, rng):
        class _E(Expert):
            def act(self, obs, env):
                s = obs["state"]
                return np.clip(s[2:] - s[:2], -0.1, 0.1).astype(np.float32)

        return _E()


class GreedyPolicy(Policy):
    """Moves a fraction ``gain`` of the way to the goal each step, plus optional Gaussian noise.

    The noise comes from torch's global generator, so reproducibility tests exercise the
    evaluation's RNG seeding. ``gain`` < 1 with a 0.1 step limit makes far goals fail in 30 steps.
    """

    def __init__(self, spec, gain: float = 0.5, noise: float = 0.0, bias: float = 0.0):
        super().__init__(spec, ["state"], obs_horizon=2, action_horizon=8, exec_horizon=4)
        self.gain, self.noise, self.bias = gain, noise, bias
        self.calls = 0

    def compute_loss(self, batch):  # pragma: no cover - not trained
        raise NotImplementedError

    def sample(self, obs, n=1, goal=None):
        self.calls += 1
        s = torch.as_tensor(np.asarray(obs["state"]))[:, -1].float()  # (B, 4)
        a = (self.gain * (s[:, 2:] - s[:, :2]) + self.bias).clamp(-0.1, 0.1)  # (B, 2)
        T = self.action_horizon - self.obs_horizon + 1
        chunk = a[:, None, None, :].expand(-1, n, T, -1).clone()
        if self.noise:
            chunk = chunk + self.noise * torch.randn_like(chunk)
        return chunk


def make_untrained_run(run_dir, task_name: str = "multimodal", step: int = 7, hidden=(32, 32)):
    """A checkpoint folder as robopolicy-train writes it, for a freshly initialised tiny BESO.

    The normalizer is fitted on random samples in the task's ranges; the weights are untrained, so
    evaluations exercise the whole pipeline but their success figures mean nothing.
    """
    from pathlib import Path

    from omegaconf import OmegaConf

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.data.normalize import Normalizer
    from robopolicy.envs import make_task
    from robopolicy.policies.build import build_policy
    from robopolicy.training.checkpoint import set_latest, state_dict_for_safetensors, write_checkpoint

    cfg = OmegaConf.create({
        "task": OmegaConf.load(CONF_DIR / "task" / f"{task_name}.yaml"),
        "policy": group_node("policy", "beso"),
        "net": OmegaConf.load(CONF_DIR / "net" / "mlp.yaml"),
    })
    cfg.net.hidden_dims = list(hidden)
    cfg.net.t_embed_dim = 16
    OmegaConf.resolve(cfg)
    spec = make_task(cfg.task).spec
    rng = np.random.default_rng(0)
    data = {k: rng.normal(size=(64, *v.shape)).astype(np.float32) for k, v in spec.obs.items() if v.kind == "lowdim"}
    data["action"] = rng.uniform(spec.action_low, spec.action_high, size=(64, spec.action_dim)).astype(np.float32)
    normalizer = Normalizer.fit(data, {k: "minmax" for k in data})
    torch.manual_seed(0)
    policy = build_policy(cfg, spec, normalizer)
    root = Path(run_dir) / "checkpoints"
    write_checkpoint(root, step, {"model.safetensors": state_dict_for_safetensors(policy),
                                  "config.yaml": OmegaConf.to_yaml(cfg), "spec.json": spec.to_dict(),
                                  "meta.json": {"step": step, "metrics": {}, "ema": False}})
    set_latest(root, step)
    return Path(run_dir)
