"""Run logging: a local ``run_dir/metrics.jsonl`` (always) and W&B (offline by default).

Only rank 0 logs. With ``wandb.mode=disabled`` wandb is never imported, so nothing depends on it.
On resume, lines the killed run wrote after its last checkpoint are dropped so that the file holds
each step once; the W&B run continues under the id stored in ``run_dir/wandb_id.txt``.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Mapping

from robopolicy.errors import ConfigError
from robopolicy.utils import atomic_write_text


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
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._truncate_after(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")
        wandb_cfg = dict(wandb_cfg or {})
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
