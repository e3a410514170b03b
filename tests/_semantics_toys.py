"""A tiny active-learning loop config shared by the semantics loop tests (2-member mapper, 4-channel stem, CPU)."""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig, OmegaConf

from robopolicy.training.config import trainer_config


def tiny_loop_cfg(low: list[float], high: list[float], steps: int) -> DictConfig:
    """The settings :func:`robopolicy.semantics.active.run_active` reads, for semantics bounded by ``low`` / ``high``."""
    return OmegaConf.create({
        "segment_length": 1, "transition_noise": 0.0, "per_round": 2, "pool_stride": 1,
        "semantics_low": list(low), "semantics_high": list(high), "train_schedule": {"steps": steps},
        "mapper": {"members": 2, "n_frames": 1, "hidden_dim": 8, "color_jitter": 0.0, "bootstrap": True, "proprio_input": False,
                   "encoder": {"_target_": "robopolicy.nets.encoders.SmallConvEncoder", "feature_dim": 8, "channels": [4, 4],
                               "strides": [2, 1], "padding": 1, "activation": "mish", "groups": 2, "plain_last": True, "num_kp": 4}},
        "trainer": trainer_config({"batch_size": 4, "device": "cpu", "progress": False, "ema": {"enabled": False}, "val_every": 0,
                                   "ckpt_every": 0, "log_every": 100, "optim": {"lr": 1e-3, "warmup_steps": 1},
                                   "wandb": {"mode": "disabled"}})})


def dot_frames(xy: np.ndarray, size: int) -> np.ndarray:
    """(T, 2) positions in [-1, 1] -> (T, size, size, 3) uint8 frames, each with one bright 2x2 dot there."""
    img = np.zeros((len(xy), size, size, 3), np.uint8)
    for t, (x, y) in enumerate(xy):
        c, r = int((x + 1) / 2 * (size - 2)), int((1 - (y + 1) / 2) * (size - 2))
        img[t, r : r + 2, c : c + 2] = 255
    return img
