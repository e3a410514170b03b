"""Seeing a run: the training plot, evaluation videos to W&B, checkpoints as W&B artifacts (off by default)."""

from __future__ import annotations

import json

import numpy as np

from robopolicy.evaluation.video import write_video
from robopolicy.training.logging import RunLogger, write_training_plot


class FakeRun:
    """Stands in for a wandb run: records what is logged."""

    def __init__(self):
        self.logged, self.artifacts = [], []

    def log(self, data, step=None):
        self.logged.append((dict(data), step))

    def log_artifact(self, art, aliases=()):
        self.artifacts.append((art, list(aliases)))


def test_training_plot_is_written_from_metrics(tmp_path):
    rows = [{"step": s, "train/loss": 1.0 / s} for s in (1, 2, 3)] + [{"step": 3, "eval/success_rate": 0.5, "eval/episodes": 4}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = write_training_plot(tmp_path)
    assert out == tmp_path / "training.png"
    assert out.stat().st_size > 1000


def test_no_plot_without_training_records(tmp_path):
    assert write_training_plot(tmp_path) is None


def test_eval_videos_go_to_wandb_at_the_step(tmp_path):
    video = write_video(tmp_path / "episode000_seed1_success.mp4", [np.full((16, 16, 3), i * 20, np.uint8) for i in range(5)])
    logger = RunLogger(tmp_path / "run", {"mode": "disabled"})
    logger._wandb_run = run = FakeRun()
    assert logger.log_videos([video], "eval/video", step=7) == 1
    data, step = run.logged[-1]
    assert step == 7
    assert list(data) == ["eval/video/episode000_seed1_success"]
    logger._wandb_run = None
    logger.close()


def test_checkpoint_artifacts_are_off_by_default(tmp_path):
    logger = RunLogger(tmp_path / "run", {"mode": "disabled"})
    logger._wandb_run = run = FakeRun()
    assert logger.log_checkpoint(tmp_path, step=1) is False
    assert run.artifacts == []
    logger._wandb_run = None
    logger.close()


def test_checkpoint_artifact_when_enabled(tmp_path):
    ckpt = tmp_path / "step_5"
    ckpt.mkdir()
    (ckpt / "meta.json").write_text("{}")
    logger = RunLogger(tmp_path / "run", {"mode": "disabled", "log_checkpoints": True})
    logger._wandb_run = run = FakeRun()
    assert logger.log_checkpoint(ckpt, step=5, aliases=["latest"]) is True
    art, aliases = run.artifacts[0]
    assert art.type == "model"
    assert aliases == ["latest", "step_5"]
    logger._wandb_run = None
    logger.close()


def test_odd_sized_frames_are_padded_not_rescaled(tmp_path):
    import imageio.v2 as imageio

    frame = np.zeros((84, 84, 3), np.uint8)
    frame[:, :42] = 255  # left half white: a rescale would move the edge, padding keeps it at column 42
    video = write_video(tmp_path / "v.mp4", [frame] * 3)
    back = imageio.mimread(video)[0]
    assert back.shape == (96, 96, 3)
    assert int(back[40, 38].mean()) > 200
    assert int(back[40, 46].mean()) < 50
