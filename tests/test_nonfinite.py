"""NaN never passes silently: training stops on a non-finite loss keeping the last good checkpoint,
best.json never records NaN, evaluation refuses non-finite actions, the runner's watchdog treats a
NaN chunk as a fault."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _eval_toys import GreedyPolicy, PointTask
from test_trainer import ToyData, ToyModel, toy_cfg

from robopolicy.errors import PolicyOutputError, TrainingDivergedError
from robopolicy.training import Trainer
from robopolicy.training import checkpoint as ckpt


class NaNAfter(ToyModel):
    """The toy regression whose training loss becomes NaN from step ``after`` + 1 on."""

    def __init__(self, after: int):
        super().__init__()
        self.after, self.calls = after, 0

    def compute_loss(self, batch):
        loss, m = super().compute_loss(batch)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                loss = loss * float("nan")
        return loss, m


class NaNValidation(ToyModel):
    def compute_loss(self, batch):
        loss, m = super().compute_loss(batch)
        return (loss if self.training else loss * float("nan")), m


def _val_loader():
    return torch.utils.data.DataLoader(ToyData(32, seed=9), batch_size=16)


def test_nan_loss_stops_training_and_latest_names_the_last_finite_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = toy_cfg(steps=30, ckpt_every=5, log_every=50, val_every=0)  # the loss is not logged before it turns NaN
    with pytest.raises(TrainingDivergedError) as e:
        Trainer(NaNAfter(after=12), ToyData(), cfg, tmp_path).fit()
    msg = str(e.value)
    assert "at step 13" in msg
    assert "lower optim.lr" in msg
    assert "step_10 is kept" in msg
    root = tmp_path / "checkpoints"
    assert json.loads((root / "latest.json").read_text())["name"] == "step_10"
    assert not (root / "step_15").exists()
    state = ckpt.read_weights(root / "step_10" / "model.safetensors")  # verified and finite
    assert all(bool(torch.isfinite(v).all()) for v in state.values())


def test_diverged_training_is_one_error_line_and_exit_2(tmp_path, capsys):
    from robopolicy.cli._hydra import (
        report_errors,  # the wrapper every robopolicy-* command runs in
    )

    torch.manual_seed(0)
    fit = report_errors(lambda: Trainer(NaNAfter(after=3), ToyData(), toy_cfg(steps=20, ckpt_every=5, val_every=0), tmp_path).fit())
    with pytest.raises(SystemExit) as e:
        fit()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: The training loss became nan at step 4")


def test_nan_validation_loss_stops_and_never_becomes_best(tmp_path):
    torch.manual_seed(0)
    cfg = toy_cfg(steps=30, ckpt_every=5, val_every=10)
    with pytest.raises(TrainingDivergedError, match="validation loss became nan at step 10"):
        Trainer(NaNValidation(), ToyData(), cfg, tmp_path, val_loader=_val_loader()).fit()
    root = tmp_path / "checkpoints"
    assert not (root / "best.json").exists()
    assert json.loads((root / "latest.json").read_text())["name"] == "step_5"


def test_a_nan_score_is_never_a_new_best(tmp_path):
    trainer = Trainer(ToyModel(), ToyData(), toy_cfg(), tmp_path)
    assert trainer._is_new_best("val/loss", float("nan")) is False
    assert trainer._is_new_best("val/loss", 0.5) is True


class NaNPolicy(GreedyPolicy):
    """Greedy toward the goal but NaN in every action (e.g. broken normalizer statistics)."""

    def sample(self, obs, n=1, goal=None):
        return super().sample(obs, n, goal) * float("nan")


def test_evaluation_refuses_a_policy_with_non_finite_actions():
    from robopolicy.evaluation import evaluate_policy

    task = PointTask()
    with pytest.raises(PolicyOutputError) as e:
        evaluate_policy(NaNPolicy(task.spec), task, episodes=2, progress=False)
    assert "non-finite actions" in str(e.value)
    assert "\n" not in str(e.value)


def test_watchdog_counts_a_nan_chunk_as_a_fault_not_a_fresh_chunk():
    from robopolicy.runtime.watchdog import Watchdog, WatchState

    wd = Watchdog(hold_after_s=0.2, stop_after_s=0.5)
    wd.arm(0.0)
    assert wd.feed(0.1, np.zeros((4, 2), np.float32)) is True
    bad = np.zeros((4, 2), np.float32)
    bad[2, 1] = np.nan
    assert wd.feed(0.25, bad) is False
    assert wd.nonfinite_chunks == 1
    assert wd.last_fresh_s == 0.1
    assert wd.check(0.31) is WatchState.HOLD  # 0.21 s since the last good chunk


def test_runner_stops_a_policy_that_only_produces_nan_chunks():
    from test_runtime_faults import make

    from robopolicy.runtime.fakes import GoToGoal

    runner, robot = make(GoToGoal(horizon=4, nan_after=2), duration_s=10.0)
    runner.run()
    assert runner.stats.stop_reason == "watchdog"
    assert runner.watchdog.nonfinite_chunks >= 1
    assert math.isfinite(float(np.stack([a for _, a in robot.sent]).sum()))


def _overflowing_run(run_dir):
    """A run whose weights are finite (so loading accepts them) but whose last layer overflows to NaN."""
    from _eval_toys import make_untrained_run

    make_untrained_run(run_dir, "multimodal", step=7, hidden=(8, 8))
    root = run_dir / "checkpoints"
    folder = root / "step_7"
    state = ckpt.read_weights(folder / "model.safetensors")
    w = state["net.net.6.weight"]
    signs = torch.tensor([1.0, -1.0]).repeat(w.numel() // 2 + 1)[: w.numel()].view_as(w)
    state["net.net.6.weight"] = 3e38 * signs  # +max and -max float32: their sum is inf - inf = NaN
    ckpt.write_checkpoint(root, 8, {"model.safetensors": state, "config.yaml": (folder / "config.yaml").read_text(),
                                    "spec.json": json.loads((folder / "spec.json").read_text()),
                                    "meta.json": {"step": 8, "metrics": {}, "ema": False}})
    ckpt.set_latest(root, 8)
    return run_dir


def test_eval_command_refuses_nan_actions_with_exit_2(tmp_path, capsys):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from robopolicy.cli._hydra import CONF_DIR, report_errors
    from robopolicy.cli.eval import evaluate_run

    run = _overflowing_run(tmp_path / "run")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("eval", overrides=[f"run_dir={run}", "episodes=1", "wandb.mode=disabled", "progress=false", "device=cpu"],
                      return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path)  # set by Hydra's launcher in a real run
        HydraConfig.instance().set_config(cfg)
        with pytest.raises(SystemExit) as e:
            report_errors(evaluate_run)(cfg)  # what robopolicy-eval runs
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: The policy produced non-finite actions")
    assert not (run / "eval.json").exists()


class OverflowAfter(ToyModel):
    """Finite losses, but the weights are pushed to inf after ``after`` training steps."""

    def __init__(self, after: int):
        super().__init__()
        self.after, self.calls = after, 0

    def compute_loss(self, batch):
        self.calls += int(self.training)
        if self.calls == self.after + 1:
            with torch.no_grad():
                self.net[0].weight[0, 0] = float("inf")
        loss, m = super().compute_loss(batch)
        return torch.nan_to_num(loss, nan=1.0, posinf=1.0), m


def test_non_finite_weights_are_never_saved(tmp_path):
    torch.manual_seed(0)
    cfg = toy_cfg(steps=30, ckpt_every=5, log_every=50, val_every=0, ema={"enabled": False}, optim={"grad_clip": 0.0})
    with pytest.raises(TrainingDivergedError, match="weight 'net.0.weight' became nan at step 10"):
        Trainer(OverflowAfter(after=7), ToyData(), cfg, tmp_path).fit()
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["name"] == "step_5"
