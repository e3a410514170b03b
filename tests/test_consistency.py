"""Consistency distillation of BESO: boundary condition, loss decrease, one network call, an ordinary run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_policies import SPEC, TINY_NETS, TO, TP, fixed_batch, normalizer

from robopolicy.defaults import group_node
from robopolicy.errors import ConfigError
from robopolicy.policies.consistency import (
    ConsistencyPolicy,
    consistency_coefficients,
    teacher_ode_step,
)

REPO = Path(__file__).resolve().parents[1]


def make(policy: str, **overrides):
    cfg = OmegaConf.create({"task": {"obs_horizon": TO, "action_horizon": TP, "exec_horizon": 4},
                            "policy": group_node("policy", policy), "net": TINY_NETS["unet"]})
    cfg.policy.pop("defaults", None)
    if policy == "consistency":  # the group's defaults list (beso first) as Hydra would compose it
        cfg.policy = OmegaConf.merge(group_node("policy", "beso"), cfg.policy)
    for k, v in overrides.items():
        OmegaConf.update(cfg, f"policy.{k}", v, merge=False)
    torch.manual_seed(0)
    from robopolicy.policies.build import build_policy

    return build_policy(cfg, SPEC, normalizer())


def test_boundary_condition_is_exact_at_sigma_min():
    c = consistency_coefficients(torch.tensor([0.001]), sigma_data=0.5, sigma_min=0.001)
    assert c.c_skip.item() == 1.0
    assert c.c_out.item() == 0.0
    student = make("consistency")
    x = torch.randn(3, TP, 2)
    cond = student.encode({"state": torch.randn(3, TO, 5)})
    out = student._predict(x, torch.full((3,), student.sigma_min), cond)
    assert torch.equal(out, x)  # f(x, σ_min) = x for any weights


def test_heun_step_is_exact_for_a_linear_trajectory():
    """D(x, σ) = 0 makes dx/dσ = x/σ, whose exact solution x·σ_next/σ Heun reproduces (Euler does not)."""
    x, s, s_next = torch.ones(1, 2, 1), torch.tensor([2.0]), torch.tensor([1.0])
    zero = lambda x, s: torch.zeros_like(x)
    assert torch.allclose(teacher_ode_step(zero, x, s, s_next, "heun"), x * 0.5)
    assert torch.allclose(teacher_ode_step(zero, x, s, s_next, "euler"), x * 0.5)  # linear in σ: Euler exact too
    quad = lambda x, s: x * (1 - s.view(-1, 1, 1))
    heun, euler = teacher_ode_step(quad, x, s, s_next, "heun"), teacher_ode_step(quad, x, s, s_next, "euler")
    exact = x * float(np.exp(-1.0))
    assert (heun - exact).abs().max() < (euler - exact).abs().max()


def test_distillation_steps_reduce_the_consistency_loss():
    teacher = make("beso")
    student = make("consistency", num_scales=6)
    student.set_teacher(teacher)
    t_state = teacher.state_dict()
    assert all(torch.equal(v, t_state[k]) for k, v in student.state_dict().items())  # starts from the teacher
    batch = fixed_batch()

    def loss_at_fixed_noise():
        torch.manual_seed(123)
        with torch.no_grad():
            return float(student.compute_loss(batch)[0])

    before = loss_at_fixed_noise()
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    for _ in range(30):
        loss, _ = student.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        student.after_step()
    assert loss_at_fixed_noise() < 0.8 * before


def test_target_network_follows_the_student_by_ema():
    student = make("consistency", target_ema=0.9)
    student.set_teacher(make("beso"))
    target = student._target_net()
    with torch.no_grad():
        for p in student.net.parameters():
            p.add_(1.0)
    before = [t.clone() for t in target.parameters()]
    student.after_step()
    for t, b, p in zip(target.parameters(), before, student.net.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * p)


def _count_net_calls(policy, fn):
    calls = []
    h = policy.net.register_forward_hook(lambda *a: calls.append(1))
    try:
        fn()
    finally:
        h.remove()
    return len(calls)


@pytest.mark.parametrize("steps", [1, 3])
def test_predict_chunk_uses_one_network_call_per_step(steps):
    student = make("consistency").eval()
    student.set_sampler({"steps": steps})
    obs = {"state": np.zeros((TO, 5), np.float32)}
    n = _count_net_calls(student, lambda: student.predict_chunk(obs))
    assert n == steps


def test_student_refuses_other_samplers_and_training_without_teacher():
    student = make("consistency")
    with pytest.raises(ConfigError, match="sampler.name=consistency"):
        student.set_sampler({"name": "ddim"})
    with pytest.raises(ConfigError, match="policy.teacher"):
        student.compute_loss(fixed_batch())


# -- end to end: teacher run -> distilled run -> load and evaluate without the teacher ----------------

TINY = ["task=multimodal", "net=unet", "net.down_dims=[16,32]", "net.t_embed_dim=16", "net.kernel_size=3", "batch_size=8",
        "val_fraction=0.25", "val_every=0", "ckpt_every=0", "progress=false", "device=cpu", "wandb.mode=disabled",
        "optim.warmup_steps=2", "final_eval.episodes=0", "task.max_episode_steps=20"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from test_train_cli import compose_cfg, make_store

    from robopolicy.cli.train import train
    from robopolicy.envs import make_task

    root = tmp_path_factory.mktemp("cd")
    store = make_store(root / "mm.zarr", make_task(compose_cfg(["task=multimodal", "dataset=x", "run_dir=x"]).task).spec)
    teacher = root / "teacher"
    train(compose_cfg(TINY + ["policy=beso", "steps=4", f"dataset={store}", f"run_dir={teacher}"]))
    student = root / "student"
    # A different net on the command line: the teacher's wins (the student must load its weights).
    train(compose_cfg(TINY + ["policy=consistency", f"policy.teacher={teacher}", "net.down_dims=[8,16]", "steps=3",
                              f"dataset={store}", f"run_dir={student}"]))
    shutil.rmtree(teacher)  # the student must not need the teacher's files from here on
    return student


def test_student_run_loads_without_the_teacher(runs):
    import robopolicy

    cfg = OmegaConf.load(runs / "checkpoints" / "step_3" / "config.yaml")
    assert list(cfg.net.down_dims) == [16, 32]
    policy = robopolicy.load(runs, device="cpu")
    assert isinstance(policy, ConsistencyPolicy)
    assert policy.teacher is None
    obs = {"state": np.zeros((policy.obs_horizon, 6), np.float32)}
    assert _count_net_calls(policy, lambda: policy.predict_chunk(obs)) == 1


def test_student_run_evaluates_with_robopolicy_eval(runs, tmp_path):
    out = tmp_path / "eval.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl", "WANDB_MODE": "disabled"}
    p = subprocess.run([sys.executable, "-m", "robopolicy.cli.eval", f"run_dir={runs}", "episodes=2", "progress=false",
                        "wandb.mode=disabled", f"out={out}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["episodes"] == 2
    assert r["sampler"]["name"] == "consistency"
    assert r["sampler"]["steps"] == 1


def test_weight_ema_step_matches_the_ema_formula():
    from robopolicy.training.ema import WeightEMA

    net = torch.nn.Linear(3, 2)
    ema = WeightEMA(net, power=0.75, max_decay=0.9999)
    for _ in range(2):
        before = [s.clone() for s in ema.ema.shadow_params]
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        ema.step()
        d = ema.decay
        assert d == pytest.approx(1 - ema.ema.optimization_step ** -0.75)  # diffusers: step k (1-based) -> 1 - k^-power
        for s, b, p in zip(ema.ema.shadow_params, before, net.parameters()):
            assert torch.allclose(s, d * b + (1 - d) * p)


@pytest.mark.parametrize("policy", ["beso", "consistency"])
def test_float_sigma_path_matches_the_tensor_path(policy):
    """Samplers pass one float level (cached scalar coefficients); training passes (N,) tensors: same D."""
    p = make(policy).eval()
    x = torch.randn(3, TP, 2)
    with torch.no_grad():
        cond = p.encode({"state": torch.randn(3, TO, 5)})
        for s in (p.sigma_max, 2.5, p.sigma_min):
            assert torch.allclose(p._predict(x, float(s), cond), p._predict(x, torch.full((3,), float(s)), cond), atol=1e-6)


def test_student_run_serves_through_the_policy_server(runs):
    import socket

    import robopolicy
    from robopolicy.runtime.client import PolicyClient
    from robopolicy.runtime.server import serve_in_thread
    from robopolicy.runtime.worker import LocalPredictor

    policy = robopolicy.load(runs, device="cpu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server, th = serve_in_thread(LocalPredictor(policy), bind=f"tcp://127.0.0.1:{port}")
    try:
        client = PolicyClient(f"tcp://127.0.0.1:{port}", timeout_s=10.0)
        assert client.obs_horizon == policy.obs_horizon
        assert client.obs_keys == policy.obs_keys
        out = client({"state": np.zeros((1, policy.obs_horizon, 6), np.float32)})
        assert out.shape == (policy.action_horizon - policy.obs_horizon + 1, 2)
        client.close()
    finally:
        server.stop()
        th.join(5)


class _Windows(torch.utils.data.Dataset):
    def __init__(self, n: int = 16):
        g = torch.Generator().manual_seed(0)
        self.state, self.action = torch.randn(n, TO, 5, generator=g), torch.rand(n, TP, 2, generator=g) * 4 - 2

    def __len__(self):
        return len(self.state)

    def __getitem__(self, i):
        return {"obs": {"state": self.state[i]}, "action": self.action[i]}


def test_resumed_distillation_restores_the_target_network(tmp_path):
    """The target θ⁻ is saved with the trainer's state: a resumed run continues from it, not from the student."""
    from robopolicy.training import Trainer
    from robopolicy.training.config import trainer_config

    cfg = trainer_config({"steps": 2, "batch_size": 4, "device": "cpu", "log_every": 1, "val_every": 0, "ckpt_every": 0,
                          "progress": False, "wandb": {"mode": "disabled"}, "ema": {"enabled": False},
                          "optim": {"warmup_steps": 0, "lr": 1e-2}})

    def student():
        s = make("consistency", num_scales=6)
        s.set_teacher(make("beso"))
        return s

    first = student()
    Trainer(first, _Windows(), cfg, tmp_path).fit()
    saved = {k: v.clone() for k, v in first._target_net().state_dict().items()}
    resumed = student()
    Trainer(resumed, _Windows(), cfg, tmp_path).fit()  # resumes at step 2 of 2: no further step
    restored = resumed._target_net().state_dict()
    flat = lambda sd: torch.cat([sd[k].flatten() for k in sorted(saved)])  # noqa: E731
    assert torch.equal(flat(restored), flat(saved))
