"""Trainer: determinism, exact resume after SIGKILL, EMA rules, eval protocol, logging.

Toy models only (no policies): a small MLP regression whose loss draws noise from the global
torch RNG and uses dropout, so resume must restore RNG streams and data order to be exact.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from robopolicy.errors import ConfigError
from robopolicy.training import Trainer
from robopolicy.training.config import trainer_config

TESTS = Path(__file__).resolve().parent


class ToyData(torch.utils.data.Dataset):
    """y = W x + b for a fixed random W; items are dicts, as the policies' windows are."""

    def __init__(self, n: int = 96, seed: int = 123):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.randn(4, 2, generator=g) + 0.5

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"obs": {"x": self.x[i]}, "y": self.y[i]}


class ToyModel(nn.Module):
    def __init__(self, batchnorm: bool = False, delay_s: float = 0.0):
        super().__init__()
        norm = nn.BatchNorm1d(32) if batchnorm else nn.LayerNorm(32)
        self.net = nn.Sequential(nn.Linear(4, 32), norm, nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 2))
        self.register_buffer("scale", torch.tensor(2.0))
        self.delay_s = delay_s

    def compute_loss(self, batch):
        if self.delay_s:
            time.sleep(self.delay_s)
        x = batch["obs"]["x"] + 0.01 * torch.randn_like(batch["obs"]["x"])  # RNG in the loss
        loss = ((self.net(x) - batch["y"] / self.scale) ** 2).mean()
        return loss, {"mse": float(loss.detach())}


def toy_cfg(**over):
    cfg = {"steps": 30, "batch_size": 16, "seed": 7, "device": "cpu", "val_every": 10, "ckpt_every": 10, "keep_last": 2,
           "log_every": 5, "progress": False, "optim": {"lr": 3e-3, "warmup_steps": 5}, "wandb": {"mode": "disabled"}}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return trainer_config(cfg)  # conf/trainer/default.yaml with these changes


def run_toy(run_dir, cfg=None, evaluate_fn=None, model_seed=0, delay_s=0.0):
    torch.manual_seed(model_seed)
    model = ToyModel(delay_s=delay_s)
    trainer = Trainer(model, ToyData(), cfg or toy_cfg(), run_dir, val_loader=torch.utils.data.DataLoader(ToyData(32, seed=9), batch_size=16),
                      evaluate_fn=evaluate_fn)
    return trainer, trainer.fit()


def weights(run_dir, step, name="model.safetensors"):
    return load_file(str(Path(run_dir) / "checkpoints" / f"step_{step}" / name))


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_seeded_runs_are_identical_and_loss_decreases(tmp_path):
    _, s1 = run_toy(tmp_path / "a")
    _, s2 = run_toy(tmp_path / "b")
    assert_same(weights(tmp_path / "a", 30), weights(tmp_path / "b", 30))
    assert_same(weights(tmp_path / "a", 30, "raw.safetensors"), weights(tmp_path / "b", 30, "raw.safetensors"))
    recs = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in recs if "train/loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    assert [r["step"] for r in recs if "val/loss" in r] == [10, 20, 30]
    # a different seed gives different weights (the comparison above can fail)
    _, _ = run_toy(tmp_path / "c", toy_cfg(seed=8))
    assert not torch.equal(weights(tmp_path / "a", 30)["net.0.weight"], weights(tmp_path / "c", 30)["net.0.weight"])


def test_checkpoint_contents(tmp_path):
    run_toy(tmp_path)
    root = tmp_path / "checkpoints"
    assert json.loads((root / "latest.json").read_text())["name"] == "step_30"
    folder = root / "step_30"
    assert {p.name for p in folder.iterdir()} >= {"model.safetensors", "raw.safetensors", "config.yaml", "train_state.pt", "meta.json"}
    st = torch.load(folder / "train_state.pt", weights_only=True)
    assert st["step"] == 30 and st["data"]["epoch"] == 30 * 16 // 96 and st["ema"]["optimization_step"] == 30
    ema, raw = weights(tmp_path, 30), weights(tmp_path, 30, "raw.safetensors")
    assert not torch.equal(ema["net.0.weight"], raw["net.0.weight"])  # model.safetensors holds EMA weights
    assert torch.equal(ema["scale"], raw["scale"])  # buffers follow the trained model
    assert json.loads((folder / "meta.json").read_text())["step"] == 30
    # keep_last=2 plus the best (lowest val loss, which may be one of the last two)
    kept = sorted(p.name for p in root.glob("step_*"))
    best = json.loads((root / "best.json").read_text())
    assert set(kept) == {"step_20", "step_30"} | {best["name"]} and best["metric"] == "val/loss"


def test_ema_refused_with_batchnorm(tmp_path):
    with pytest.raises(ConfigError, match="BatchNorm"):
        Trainer(ToyModel(batchnorm=True), ToyData(), toy_cfg(), tmp_path)
    Trainer(ToyModel(batchnorm=True), ToyData(), toy_cfg(ema={"enabled": False}), tmp_path)  # allowed without EMA


def test_eval_protocol_max_last10_and_best(tmp_path):
    rates = iter([0.1, 0.9, 0.2, 0.3, 0.4, 0.5, 0.5, 0.6, 0.2, 0.3, 0.4, 0.7])
    seen = []

    def evaluate(model, step):
        assert not model.training
        seen.append(step)
        return {"success_rate": next(rates), "episodes": 4}

    cfg = toy_cfg(steps=24, eval={"every": 2}, ckpt_every=100, keep_last=1, val_every=0)
    _, summary = run_toy(tmp_path, cfg, evaluate_fn=evaluate)
    assert seen == list(range(2, 25, 2))
    assert summary["eval/success_rate_max"] == 0.9
    last10 = [0.2, 0.3, 0.4, 0.5, 0.5, 0.6, 0.2, 0.3, 0.4, 0.7]
    assert summary["eval/success_rate_last10_mean"] == pytest.approx(sum(last10) / 10)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["eval/success_rate_max"] == 0.9 and on_disk["eval/n_evals"] == 12
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert best == {"name": "step_4", "step": 4, "metric": "eval/success_rate", "value": 0.9}
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_24", "step_4"]


def test_non_finite_loss_is_a_clear_error(tmp_path):
    class Bad(ToyModel):
        def compute_loss(self, batch):
            loss, m = super().compute_loss(batch)
            return loss * float("nan"), m

    with pytest.raises(ConfigError, match="loss became nan"):
        Trainer(Bad(), ToyData(), toy_cfg(steps=5, ema={"enabled": False}), tmp_path).fit()


SCRIPT = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_trainer import run_toy, toy_cfg
run_toy({run_dir!r}, toy_cfg(steps=40, ckpt_every=10, val_every=10), delay_s={delay})
"""


def _script(run_dir, delay):
    return [sys.executable, "-c", SCRIPT.format(tests=str(TESTS), run_dir=str(run_dir), delay=delay)]


@pytest.fixture
def one_thread():
    """In-process runs use one thread, as the subprocesses do, so float results are comparable."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, one_thread):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_script(tmp_path / "killed", 0.02), env=env)
    latest = tmp_path / "killed" / "checkpoints" / "latest.json"
    deadline = time.time() + 60
    while time.time() < deadline:  # kill as soon as the second checkpoint exists (between checkpoints)
        if latest.exists() and json.loads(latest.read_text())["step"] >= 20:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step_at_kill = json.loads(latest.read_text())["step"]
    assert 20 <= step_at_kill < 40, "the run must be killed mid-way"
    run_toy(tmp_path / "killed", toy_cfg(steps=40, ckpt_every=10, val_every=10))  # resumes from latest
    run_toy(tmp_path / "ref", toy_cfg(steps=40, ckpt_every=10, val_every=10))  # uninterrupted reference
    assert_same(weights(tmp_path / "ref", 40), weights(tmp_path / "killed", 40))
    assert_same(weights(tmp_path / "ref", 40, "raw.safetensors"), weights(tmp_path / "killed", 40, "raw.safetensors"))
    ref_st = torch.load(tmp_path / "ref/checkpoints/step_40/train_state.pt", weights_only=True)
    res_st = torch.load(tmp_path / "killed/checkpoints/step_40/train_state.pt", weights_only=True)
    assert torch.equal(ref_st["rng"]["torch"], res_st["rng"]["torch"])
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # no duplicated lines after resume


def test_step_batch_sampler_epochs_shards_and_resume():
    from robopolicy.training.distributed import StepBatchSampler

    full = StepBatchSampler(n=10, global_batch_size=4, seed=3)
    stream = [pair for step in range(5) for pair in full.batch_indices(step)]  # 20 samples = 2 epochs
    assert [e for e, _ in stream] == [0] * 10 + [1] * 10
    assert sorted(i for e, i in stream if e == 0) == list(range(10)) == sorted(i for e, i in stream if e == 1)
    assert [i for e, i in stream if e == 0] != [i for e, i in stream if e == 1]  # reshuffled per epoch
    ranks = [StepBatchSampler(10, 4, 3, rank=r, world_size=2) for r in range(2)]
    assert ranks[0].batch_indices(3) + ranks[1].batch_indices(3) == full.batch_indices(3)
    resumed = iter(StepBatchSampler(10, 4, 3, start_step=3))
    assert next(resumed) == full.batch_indices(3) and next(resumed) == full.batch_indices(4)
    with pytest.raises(ConfigError, match="not divisible"):
        StepBatchSampler(10, 5, 0, world_size=2)


def test_datasets_with_set_epoch_see_each_items_epoch(tmp_path):
    class Recording(ToyData):
        epoch = 0
        seen: list = []

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __getitem__(self, i):
            Recording.seen.append(self.epoch)
            return super().__getitem__(i)

    Trainer(ToyModel(), Recording(32), toy_cfg(steps=5, batch_size=16, val_every=0), tmp_path).fit()
    assert Recording.seen == [0] * 32 + [1] * 32 + [2] * 16
