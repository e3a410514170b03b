"""Run logging: a local ``run_dir/metrics.jsonl`` (always) and W&B (offline by default).

Only rank 0 logs. With ``wandb.mode=disabled`` wandb is never imported, so nothing depends on it.
On resume, lines the killed run wrote after its last checkpoint are dropped so that the file holds
each step once; the W&B run continues under the id stored in ``run_dir/wandb_id.txt``.

Beside the scalars: evaluation videos (mp4 files written by the rollouts into the run folder) go
to W&B as ``wandb.Video`` under the same step as the success curves (:meth:`RunLogger.log_videos`);
checkpoint folders can be logged as W&B model artifacts (``wandb.log_checkpoints``, off by
default: :meth:`RunLogger.log_checkpoint`); and :func:`write_training_plot` draws
``run_dir/training.png`` (loss and periodic success against the step) from metrics.jsonl.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

from robopolicy.errors import ConfigError
from robopolicy.utils import atomic_write_text
from robopolicy.utils.plots import save_figure


def _clean(metrics: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in metrics.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = str(v)
        out[k] = v
    return out


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a metrics.jsonl file, oldest first; a line cut by a kill is skipped."""
    rows = []
    path = Path(path)
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class RunLogger:
    """``log(metrics, step)`` to metrics.jsonl and W&B; ``summary(d)`` to the W&B run summary."""

    def __init__(self, run_dir: str | os.PathLike, wandb_cfg: Mapping[str, Any] | None, config: dict | None = None,
                 enabled: bool = True, resume_step: int = 0):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self._wandb_run = None
        wandb_cfg = dict(wandb_cfg or {})
        self.log_checkpoints = bool(wandb_cfg.get("log_checkpoints", False))
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._truncate_after(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")
        mode = str(wandb_cfg.get("mode", "offline"))
        if mode not in ("online", "offline", "disabled"):
            raise ConfigError(f"Unknown wandb.mode {mode!r}; use online, offline or disabled.")
        if mode != "disabled":
            self._wandb_run = self._init_wandb(mode, wandb_cfg, config)

    def _truncate_after(self, step: int) -> None:
        """On resume: drop records past ``step`` (written after the checkpoint we resume from)."""
        if self.path.exists():
            keep = [rec for rec in read_metrics(self.path) if int(rec.get("step", 0)) <= step]
            atomic_write_text(self.path, "".join(json.dumps(rec) + "\n" for rec in keep))

    def _init_wandb(self, mode: str, cfg: dict, config: dict | None):
        import wandb

        id_file = self.run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
        atomic_write_text(id_file, run_id)
        try:
            return wandb.init(
                mode=mode, project=cfg.get("project") or "robopolicy", entity=cfg.get("entity") or None,
                name=cfg.get("name") or self.run_dir.name, tags=list(cfg.get("tags") or []),
                dir=str(self.run_dir), config=config, id=run_id, resume="allow",
            )
        except Exception as e:  # wandb raises many types (auth, network); one sentence for the user
            raise ConfigError(f"W&B could not start in mode {mode!r} ({e}); log in with `wandb login` or use wandb.mode=offline.") from e

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        if not self.enabled:
            return
        rec = {"step": int(step), **_clean(metrics)}
        self._file.write(json.dumps(rec) + "\n")
        self._file.flush()
        if self._wandb_run is not None:
            self._wandb_run.log(dict(metrics), step=int(step))

    def log_videos(self, paths: Sequence[str | os.PathLike] | None, key: str, step: int) -> int:
        """Log mp4 files (already in the run folder) to W&B under ``key/<file stem>`` at ``step``; returns how many."""
        if not (self.enabled and self._wandb_run is not None and paths):
            return 0
        import wandb

        videos = {f"{key}/{Path(p).stem}": wandb.Video(str(p), format="mp4") for p in paths if Path(p).is_file()}
        if videos:
            self._wandb_run.log(videos, step=int(step))
        return len(videos)

    def log_checkpoint(self, folder: str | os.PathLike, step: int, aliases: Sequence[str] = ("latest",)) -> bool:
        """Log a checkpoint folder as a W&B ``model`` artifact when ``wandb.log_checkpoints`` is on."""
        if not (self.enabled and self.log_checkpoints and self._wandb_run is not None):
            return False
        import wandb

        art = wandb.Artifact(f"{self.run_dir.name}-checkpoint", type="model", metadata={"step": int(step)})
        art.add_dir(str(folder))
        self._wandb_run.log_artifact(art, aliases=[*aliases, f"step_{int(step)}"])
        return True

    def summary(self, values: Mapping[str, Any]) -> None:
        if self.enabled and self._wandb_run is not None:
            self._wandb_run.summary.update(_clean(values))

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None


def write_training_plot(run_dir: str | os.PathLike, title: str | None = None) -> Path | None:
    """``run_dir/training.png`` from ``run_dir/metrics.jsonl`` (None when there is nothing to plot)."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir / "metrics.jsonl")
    if not any("train/loss" in r for r in metrics):
        return None
    out = run_dir / "training.png"
    plot_training(metrics, out, title or run_dir.name)
    return out


def plot_training(metrics: list[dict], out_png: Path, title: str) -> None:
    """Loss (train, validation) and periodic evaluation success against the training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key):
        pts = [(r["step"], r[key]) for r in metrics if key in r and r.get(key) is not None]
        return ([p[0] for p in pts], [p[1] for p in pts]) if pts else ([], [])

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, label in (("train/loss", "train"), ("val/loss", "validation")):
        x, y = series(key)
        if x:
            ax1.plot(x, y, label=label)
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss")
    ax1.legend()
    evals = [r for r in metrics if r.get("eval/success_rate") is not None]
    if evals:
        from robopolicy.evaluation import wilson_interval

        x = [r["step"] for r in evals]
        y = [r["eval/success_rate"] for r in evals]
        ax2.plot(x, y, marker="o")
        if all("eval/episodes" in r for r in evals):
            ci = [wilson_interval(round(r["eval/success_rate"] * r["eval/episodes"]), int(r["eval/episodes"])) for r in evals]
            ax2.fill_between(x, [c[0] for c in ci], [c[1] for c in ci], alpha=0.2, label="95% Wilson interval")
            ax2.legend()
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlabel("step")
    ax2.set_ylabel("success rate (periodic eval)")
    fig.suptitle(title)
    save_figure(fig, out_png)
