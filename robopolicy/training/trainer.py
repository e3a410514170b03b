"""The one trainer: any ``nn.Module`` with ``compute_loss(batch) -> (loss, metrics)``.

AdamW + warm-up/cosine LR (diffusers), gradient clipping, weight EMA, periodic validation loss and
evaluation (``evaluate_fn(model, step) -> dict``), metrics.jsonl + W&B, atomic checkpoints with
exact resume, and DDP under torchrun. Batch ``k`` is a pure function of ``(seed, k)``
(:class:`StepBatchSampler`) and every RNG is checkpointed, so a killed run that resumes ends with
the same weights as an uninterrupted one (CPU, ``num_workers=0`` or index-determined items).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import torch
from diffusers.optimization import get_cosine_schedule_with_warmup
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from robopolicy.errors import CheckpointError, ConfigError, DataError, TrainingDivergedError
from robopolicy.training import checkpoint as ckpt
from robopolicy.training.config import check_trainer_config, trainer_config  # noqa: F401  (trainer_config: re-exported)
from robopolicy.training.distributed import EpochIndexed, LossModule, StepBatchSampler, barrier, mean_across_ranks, setup_distributed
from robopolicy.training.ema import WeightEMA
from robopolicy.training.logging import RunLogger, write_training_plot
from robopolicy.utils import atomic_write_json, seed_everything

EvaluateFn = Callable[[nn.Module, int], Mapping[str, Any]]


def to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors inside nested dicts / lists / tuples to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def eval_protocol(history: list[list[float]]) -> dict[str, float]:
    """Diffusion Policy's reporting: max and mean of the last 10 periodic success rates."""
    if not history:
        return {}
    rates = [r for _, r in history]
    last = rates[-10:]
    return {"eval/success_rate_max": max(rates), "eval/success_rate_last10_mean": sum(last) / len(last), "eval/n_evals": len(rates)}


class Trainable(Protocol):
    """What the trainer needs of a model (policies, critics, mappers, the VAE)."""

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, Mapping[str, float]]:
        """One batch -> (scalar loss, metrics to log)."""

    # Optional hook, called after every optimizer step when the model defines it:
    #   def after_step(self) -> None     (a critic's or a consistency student's target-network update)
    # Optional pair, for training state that is not in the weights (saved in train_state.pt, restored on resume):
    #   def extra_train_state(self) -> dict[str, Tensor]      (a consistency student's target network)
    #   def load_extra_train_state(self, state) -> None


class Trainer:
    """One trainer for every model (:class:`Trainable`). ``train_loader`` is the training *dataset*;
    the trainer builds its own step-indexed, resumable sampler and DataLoader from it."""

    def __init__(self, model: nn.Module, train_loader, cfg_train: Any, run_dir, val_loader=None,
                 evaluate_fn: EvaluateFn | None = None, checkpoint_extra: dict | None = None,
                 final_evaluate_fn: EvaluateFn | None = None):
        if not callable(getattr(model, "compute_loss", None)):
            raise ConfigError(f"{type(model).__name__} has no compute_loss(batch) method; the trainer needs one that returns (loss, metrics).")
        self.cfg = cfg = check_trainer_config(cfg_train)  # complete already: conf/trainer/default.yaml via Hydra or trainer_config
        if int(cfg.steps) < 1:
            raise ConfigError(f"steps={cfg.steps} must be at least 1.")
        if str(cfg.precision) not in ("fp32", "bf16"):
            raise ConfigError(f"Unknown precision={cfg.precision!r}; use fp32 or bf16.")
        self.run_dir = Path(run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.dist = setup_distributed(str(cfg.device))
        self.device = self.dist.device
        self.model = model.to(self.device).train()
        self.val_loader, self.evaluate_fn, self.final_evaluate_fn = val_loader, evaluate_fn, final_evaluate_fn
        self.extra = dict(checkpoint_extra or {})
        self.ema = WeightEMA(model, power=cfg.ema.power, max_decay=cfg.ema.max_decay) if cfg.ema.enabled else None

        o = cfg.optim
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
        groups = [{"params": decay, "weight_decay": float(o.weight_decay)}, {"params": no_decay, "weight_decay": 0.0}]
        # fused=True: one kernel over all parameters instead of a Python loop of ~10 ops per tensor (CPU and CUDA).
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=float(o.lr), betas=tuple(float(b) for b in o.betas),
                                           fused=self.device.type in ("cpu", "cuda"))
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, int(o.warmup_steps), int(cfg.steps))
        self.trainable = decay + no_decay
        self.loss_module: nn.Module = LossModule(model)
        # Optional model hook run after every optimizer step (critics move their target networks here).
        self.after_step = getattr(model, "after_step", None) if callable(getattr(model, "after_step", None)) else None
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.loss_module = DistributedDataParallel(self.loss_module, device_ids=ids, find_unused_parameters=bool(cfg.ddp_find_unused_parameters))

        if isinstance(train_loader, torch.utils.data.DataLoader):
            self.dataset, self.collate_fn = train_loader.dataset, train_loader.collate_fn
        else:
            self.dataset, self.collate_fn = train_loader, None
        self.step = 0
        self.train_time_s = 0.0
        self.eval_history: list[list[float]] = []
        self.last: dict[str, float] = {}

    # -- data ---------------------------------------------------------------------------------------
    def _batches(self):
        cfg = self.cfg
        self.sampler = StepBatchSampler(len(self.dataset), int(cfg.batch_size), int(cfg.seed), self.step, self.dist.rank, self.dist.world_size)
        # Own generator: worker seeds must not draw from (and shift) the global torch RNG stream.
        gen = torch.Generator().manual_seed(int(cfg.seed) * 7919 + self.dist.rank * 104729 + self.step)
        kw = {"collate_fn": self.collate_fn} if self.collate_fn is not None else {}
        loader = torch.utils.data.DataLoader(EpochIndexed(self.dataset), batch_sampler=self.sampler, num_workers=int(cfg.num_workers),
                                             pin_memory=self.device.type == "cuda", generator=gen, **kw)
        return iter(loader)

    # -- model views --------------------------------------------------------------------------------
    def eval_model(self) -> nn.Module:
        """The weights to evaluate and ship: EMA when on, else the raw model (in eval mode)."""
        return self.ema.synced_model() if self.ema is not None else self.model.eval()

    def _diverged(self, what: str, value: float, step: int) -> TrainingDivergedError:
        """The error that stops a run whose ``what`` became non-finite at ``step`` (nothing is saved)."""
        ptr = ckpt.read_pointer(self.ckpt_root, "latest.json")
        kept = f"the last good checkpoint {ptr['name']} is kept" if ptr else "no checkpoint was written"
        return TrainingDivergedError(f"The {what} became {value} at step {step}; lower optim.lr (now {float(self.cfg.optim.lr):g}) "
                                     f"or check the dataset for NaN/inf values ({kept}).")

    def _check_finite_since_last_check(self, bad_step: torch.Tensor, window_loss: Any) -> None:
        """Raise if any step since the last check had a non-finite loss or gradient norm.

        ``bad_step`` is a device scalar (first bad step, or -1) updated every step without a host sync;
        it is read only here, before anything is logged, validated, evaluated or saved.
        """
        first = int(bad_step)
        if mean_across_ranks(float(first >= 0), self.dist) > 0:  # any rank: gradients are shared
            value = float(window_loss) if first >= 0 else float("nan")
            raise self._diverged("training loss", value, first if first >= 0 else self.step)

    @torch.no_grad()
    def validate(self) -> float:
        model = self.eval_model()
        total, n = 0.0, 0
        with ckpt.preserved_rng():  # the same noise at every validation; training stream untouched
            torch.manual_seed(int(self.cfg.seed))
            for batch in self.val_loader:
                loss, _ = model.compute_loss(to_device(batch, self.device))
                total, n = total + float(loss), n + 1
        self.model.train()
        return total / max(n, 1)

    def _evaluate(self, fn: EvaluateFn) -> dict:
        with ckpt.preserved_rng():
            out = dict(fn(self.eval_model(), self.step))
        self.model.train()
        return out

    # -- checkpoints ----------------------------------------------------------------------------------
    def _train_state(self) -> dict:
        return {
            "step": self.step, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None, "rng": ckpt.capture_rng_state(),
            "data": {**self.sampler.position(self.step), "seed": int(self.cfg.seed), "batch_size": int(self.cfg.batch_size)},
            "eval_history": [list(map(float, h)) for h in self.eval_history],
            "train_time_s": float(self.train_time_s), "last": dict(self.last),
            "model_extra": self.model.extra_train_state() if callable(getattr(self.model, "extra_train_state", None)) else {},
        }

    def save_checkpoint(self, metrics: Mapping[str, Any], is_best: bool = False, score: tuple | None = None) -> Path:
        config = self.extra.get("config", self.cfg)
        config_text = OmegaConf.to_yaml(config, resolve=True) if isinstance(config, DictConfig) else OmegaConf.to_yaml(OmegaConf.create(config))
        spec = self.extra.get("spec")
        files: dict[str, Any] = {"model.safetensors": ckpt.state_dict_for_safetensors(self.eval_model())}
        bad = next((k for k, v in files["model.safetensors"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
        if bad is not None:  # finite losses can still hide overflowing weights: never write them as the latest
            self.model.train()
            raise self._diverged(f"weight {bad!r}", float("nan"), self.step)
        if self.ema is not None:
            files["raw.safetensors"] = ckpt.state_dict_for_safetensors(self.model)
        self.model.train()
        files["config.yaml"] = config_text
        if spec is not None:
            files["spec.json"] = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
        files["train_state.pt"] = self._train_state()
        meta = {k: v for k, v in self.extra.items() if k not in ("config", "spec")}
        files["meta.json"] = {**meta, "step": self.step, "metrics": dict(metrics), "ema": self.ema is not None}
        folder = ckpt.write_checkpoint(self.ckpt_root, self.step, files)
        ckpt.set_latest(self.ckpt_root, self.step)
        if is_best and score is not None:
            atomic_write_json(self.ckpt_root / "best.json", {"name": folder.name, "step": self.step, "metric": score[0], "value": score[1]})
        best = ckpt.read_pointer(self.ckpt_root, "best.json")
        ckpt.prune(self.ckpt_root, int(self.cfg.keep_last), {best["name"]} if best else set())
        self.write_summary()
        return folder

    def _is_new_best(self, metric: str, value: float) -> bool:
        if not math.isfinite(value):  # a NaN score is never the best (a first NaN would otherwise be recorded)
            return False
        best = ckpt.read_pointer(self.ckpt_root, "best.json")
        if best is None:
            return True
        if best["metric"] != metric:  # evaluation success outranks validation loss
            return metric == "eval/success_rate"
        return value > best["value"] if metric == "eval/success_rate" else value < best["value"]

    def _resume(self) -> bool:
        ptr = ckpt.read_pointer(self.ckpt_root, "latest.json")
        if ptr is None:
            return False
        folder = ckpt.find_checkpoint(self.run_dir, "last")
        self._check_same_run(ckpt.read_meta(folder))
        ckpt.load_weights(self.model, folder / ("raw.safetensors" if self.ema is not None else "model.safetensors"))
        st = ckpt.load_train_state(folder)
        if (self.ema is None) != (st["ema"] is None):
            raise ConfigError(f"Run {str(self.run_dir)!r} was trained with ema.enabled={st['ema'] is not None}; resume it with the same setting or use a new run_dir.")
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(st["ema"])
        if st.get("model_extra") and callable(getattr(self.model, "load_extra_train_state", None)):
            self.model.load_extra_train_state(st["model_extra"])
        self.step, self.train_time_s = int(st["step"]), float(st["train_time_s"])
        self.eval_history, self.last = [list(h) for h in st["eval_history"]], dict(st["last"])
        if self.dist.is_main:
            ckpt.restore_rng_state(st["rng"])
        else:  # other ranks' streams are not saved: reseed them from (seed, rank, step)
            seed_everything(int(self.cfg.seed) + 1000 * self.dist.rank + self.step)
        return True

    def _check_same_run(self, meta: Mapping[str, Any]) -> None:
        """Resuming must continue on the dataset and task the run started with (unless overridden)."""
        def differs(key: str) -> bool:
            return key in meta and key in self.extra and str(meta[key]) != str(self.extra[key])

        if (differs("dataset_path") or ("dataset_path" not in meta and differs("dataset"))) and not bool(self.cfg.allow_dataset_change):
            raise DataError(f"Run {str(self.run_dir)!r} was trained on dataset {meta.get('dataset')} but this command gives "
                            f"{self.extra.get('dataset')}; use a new run_dir, or add allow_dataset_change=true to continue on the new data.")
        if differs("env") and not bool(self.cfg.allow_task_mismatch):
            raise CheckpointError(f"Run {str(self.run_dir)!r} was trained on task {meta['env']!r} but this command gives "
                                  f"{self.extra['env']!r}; use a new run_dir, or add allow_task_mismatch=true to continue anyway.")

    # -- summary -----------------------------------------------------------------------------------
    def summary(self) -> dict:
        s = {"step": self.step, "steps": int(self.cfg.steps), "train_time_s": round(self.train_time_s, 3), **self.last,
             **eval_protocol(self.eval_history), "eval/history": self.eval_history,
             "best_checkpoint": ckpt.read_pointer(self.ckpt_root, "best.json")}
        final_path = self.run_dir / "summary.json"
        if final_path.exists():
            import json

            old = json.loads(final_path.read_text())
            if old.get("final") and old.get("step") == self.step:
                s["final"] = old["final"]
        return s

    def write_summary(self, extra: Mapping[str, Any] | None = None) -> dict:
        s = {**self.summary(), **(extra or {})}
        if self.dist.is_main:
            atomic_write_json(self.run_dir / "summary.json", s)
        return s

    # -- loop --------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg = self.cfg
        resumed = self._resume()
        if not resumed:
            seed_everything(int(cfg.seed) + 1000 * self.dist.rank)
        main = self.dist.is_main
        logger = RunLogger(self.run_dir, OmegaConf.to_container(cfg.wandb, resolve=True),
                           config=OmegaConf.to_container(OmegaConf.create(self.extra.get("config", cfg)), resolve=True) if main else None,
                           enabled=main, resume_step=self.step)
        total = int(cfg.steps)
        bar = tqdm(total=total, initial=self.step, disable=not (main and cfg.progress), dynamic_ncols=True, desc="train")
        it = self._batches() if self.step < total else None
        bad_step = torch.tensor(-1, device=self.device)  # first step with a non-finite loss / grad norm (no sync per step)
        window: dict[str, float] = {}
        n_window, t_window = 0, 0.0
        try:
            while self.step < total:
                t0 = time.perf_counter()
                batch = to_device(next(it), self.device)
                # bf16: the forward and loss under autocast (oneDNN bf16 convolutions / matmuls on CPUs with
                # avx512_bf16 or AMX, tensor cores on CUDA); parameters, gradients and optimizer state stay fp32.
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=str(cfg.precision) == "bf16"):
                    loss, metrics = self.loss_module(batch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                finite = torch.isfinite(loss.detach())
                if float(cfg.optim.grad_clip) > 0:
                    gnorm = torch.nn.utils.clip_grad_norm_(self.trainable, float(cfg.optim.grad_clip))
                    window["train/grad_norm"] = window.get("train/grad_norm", 0.0) + gnorm.detach()
                    finite = finite & torch.isfinite(gnorm.detach())
                bad_step = torch.where(~finite & (bad_step < 0), torch.full_like(bad_step, self.step + 1), bad_step)
                self.optimizer.step()
                self.scheduler.step()
                if self.after_step is not None:  # e.g. a critic's target-network update
                    self.after_step()
                if self.ema is not None:
                    self.ema.step()
                self.step += 1
                window["train/loss"] = window.get("train/loss", 0.0) + loss.detach()  # summed on device: no sync per step
                for k, v in (metrics or {}).items():
                    window[f"train/{k}"] = window.get(f"train/{k}", 0.0) + float(v)
                n_window += 1
                dt_step = time.perf_counter() - t0
                self.train_time_s += dt_step
                t_window += dt_step
                bar.update(1)
                done = self.step == total
                logs: dict[str, Any] = {}
                due_log = self.step % max(int(cfg.log_every), 1) == 0 or done
                due_val = self.val_loader is not None and int(cfg.val_every) > 0 and (self.step % int(cfg.val_every) == 0 or done)
                due_eval = self.evaluate_fn is not None and int(cfg.eval.every) > 0 and (self.step % int(cfg.eval.every) == 0 or done)
                due_ckpt = done or (int(cfg.ckpt_every) > 0 and self.step % int(cfg.ckpt_every) == 0)
                cadence = [int(cfg.val_every), int(cfg.eval.every)]  # config only: the same steps on every rank (a collective)
                if due_log or due_ckpt or any(c > 0 and self.step % c == 0 for c in cadence):
                    self._check_finite_since_last_check(bad_step, window.get("train/loss", float("nan")))

                if due_log:
                    logs = {k: mean_across_ranks(float(v) / n_window, self.dist) for k, v in window.items()}
                    dt = max(t_window, 1e-9)  # data + step time only (not validation, rollouts, checkpoints)
                    logs.update({"train/lr": self.scheduler.get_last_lr()[0], "train/steps_per_s": n_window / dt,
                                 "train/samples_per_s": n_window * int(cfg.batch_size) / dt})
                    if self.ema is not None:
                        logs["train/ema_decay"] = self.ema.decay
                    self.last["train/loss"] = logs["train/loss"]
                    bar.set_postfix(loss=f"{logs['train/loss']:.4f}")
                    window, n_window, t_window = {}, 0, 0.0

                score = None
                if main and due_val:
                    val_loss = self.validate()
                    if not math.isfinite(val_loss):
                        raise self._diverged("validation loss", val_loss, self.step)
                    logs["val/loss"] = self.last["val/loss"] = val_loss
                    score = ("val/loss", logs["val/loss"])
                if main and due_eval:
                    res = self._evaluate(self.evaluate_fn)
                    logger.log_videos(res.get("videos"), "eval/video", self.step)
                    logs.update({f"eval/{k}": v for k, v in res.items() if isinstance(v, (int, float))})
                    if "success_rate" in res:
                        self.eval_history.append([self.step, float(res["success_rate"])])
                        self.last["eval/success_rate"] = float(res["success_rate"])
                        logs.update(eval_protocol(self.eval_history))
                        score = ("eval/success_rate", float(res["success_rate"]))
                if main and logs:
                    logger.log(logs, self.step)
                if main:
                    best = score is not None and self._is_new_best(*score)
                    if best or due_ckpt:
                        folder = self.save_checkpoint({k: v for k, v in logs.items() if isinstance(v, (int, float))}, is_best=best, score=score)
                        logger.log_checkpoint(folder, self.step, aliases=["latest", "best"] if best else ["latest"])
            bar.close()
            summary = self.summary()
            if main and self.final_evaluate_fn is not None and "final" not in summary:
                res = self._evaluate(self.final_evaluate_fn)
                logger.log_videos(res.get("videos"), "final/video", self.step)
                summary["final"] = {k: v for k, v in res.items() if k in ("success_rate", "ci95", "episodes", "mean_return", "latency_ms")}
                summary["final"]["step"] = self.step
                logger.log({f"final/{k}": v for k, v in summary["final"].items() if isinstance(v, (int, float))}, self.step)
            if main:
                write_training_plot(self.run_dir)
                atomic_write_json(self.run_dir / "summary.json", summary)
                logger.summary({k: v for k, v in summary.items() if isinstance(v, (int, float))})
                logger.summary({f"final/{k}": v for k, v in summary.get("final", {}).items() if isinstance(v, (int, float))})
            barrier(self.dist)
            return summary
        finally:
            bar.close()
            logger.close()
