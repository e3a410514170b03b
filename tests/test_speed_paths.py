"""The inference and training fast paths keep their meaning: cached normaliser tensors, fused
un-normalisation, one conditioning row per observation, and the trainer's precision switch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robopolicy.data.normalize import Normalizer
from robopolicy.errors import ConfigError
from robopolicy.training import Trainer
from robopolicy.training.config import trainer_config


def _norm() -> Normalizer:
    rng = np.random.default_rng(0)
    return Normalizer.fit({"a": rng.normal(3.0, 2.0, size=(50, 3)).astype(np.float32)}, {"a": "meanstd"})


def test_unnormalize_is_offset_plus_x_over_scale():
    n = _norm()
    x = torch.randn(4, 3)
    expected = x / n.scale_a + n.offset_a
    torch.testing.assert_close(n.unnormalize("a", x), expected, rtol=0, atol=1e-6)


def test_cached_statistics_follow_the_module_to_another_dtype():
    n = _norm()
    n.normalize("a", torch.zeros(1, 3))  # fills the cache with the float32 buffers
    n.double()
    assert n.normalize("a", torch.zeros(1, 3)).dtype == torch.float64


def test_cached_statistics_follow_load_state_dict():
    n, fitted = Normalizer.empty({"a": (3,)}), _norm()
    n.normalize("a", torch.zeros(1, 3))
    n.load_state_dict(fitted.state_dict())
    x = torch.randn(2, 3)
    torch.testing.assert_close(n.normalize("a", x), fitted.normalize("a", x))


class _AutocastProbe(nn.Module):
    """A toy model that records whether its forward ran under bf16 autocast."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)
        self.seen: list[bool] = []

    def compute_loss(self, batch):
        self.seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return self.lin(batch["x"]).float().pow(2).mean(), {}


class _Data(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"x": torch.full((4,), float(i))}


def _fit(tmp_path, precision: str) -> _AutocastProbe:
    m = _AutocastProbe()
    cfg = {"steps": 2, "batch_size": 4, "device": "cpu", "val_every": 0, "ckpt_every": 0, "progress": False,
           "wandb": {"mode": "disabled"}, "ema": {"enabled": False}, "precision": precision}
    Trainer(m, _Data(), trainer_config(cfg), tmp_path).fit()
    return m


def test_precision_bf16_runs_the_forward_under_autocast(tmp_path):
    assert _fit(tmp_path, "bf16").seen == [True, True]


def test_precision_fp32_runs_the_forward_without_autocast(tmp_path):
    assert _fit(tmp_path, "fp32").seen == [False, False]


def test_unknown_precision_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="precision"):
        _fit(tmp_path, "fp16")
