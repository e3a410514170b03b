"""The trainer's settings: a typed schema here, the values in ``conf/trainer/default.yaml`` (the one place).

Hydra commands include that file (``trainer@_global_: default`` in train.yaml / train_critic.yaml,
``trainer@trainer`` / ``trainer@vae_trainer`` in semantics.yaml), so the config a command hands to
:class:`~robopolicy.training.Trainer` is already complete. The trainer only checks it against
:class:`TrainerConfig` (every key present, each of its type) and never reads the file itself.
Python callers that want the file's values with a few changed build their config with
:func:`trainer_config`.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from robopolicy.errors import ConfigError


@dataclass
class OptimConfig:
    lr: float
    weight_decay: float
    betas: List[float]
    warmup_steps: int
    grad_clip: float


@dataclass
class EMAConfig:
    enabled: bool
    power: float
    max_decay: float


@dataclass
class PeriodicEvalConfig:
    every: int


@dataclass
class WandbConfig:
    mode: str
    project: str
    entity: Optional[str]
    name: Optional[str]
    tags: List[str]
    log_checkpoints: bool


@dataclass
class TrainerConfig:
    """The keys of conf/trainer/default.yaml and their types (no values: those live in the file)."""

    steps: int
    batch_size: int
    num_workers: int
    device: str
    seed: int
    precision: str
    optim: OptimConfig
    ema: EMAConfig
    val_every: int
    ckpt_every: int
    keep_last: int
    log_every: int
    progress: bool
    ddp_find_unused_parameters: bool
    allow_task_mismatch: bool
    allow_dataset_change: bool
    eval: PeriodicEvalConfig
    wandb: WandbConfig


def _schema_part(cfg: Any, schema: type) -> dict:
    """The part of ``cfg`` the dataclass ``schema`` describes (a command's config holds more: task, policy, ...)."""
    out = {}
    for f in dataclasses.fields(schema):
        if f.name not in cfg:
            continue
        value = cfg[f.name]
        out[f.name] = _schema_part(value, f.type) if dataclasses.is_dataclass(f.type) and OmegaConf.is_dict(value) else value
    return out


def check_trainer_config(cfg: Any) -> DictConfig:
    """``cfg`` (a command's whole config or a trainer section) as a DictConfig, after checking every
    :class:`TrainerConfig` key is there with a value of its type. Raises ConfigError naming the key."""
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg or {}))
    part = OmegaConf.create(_schema_part(cfg, TrainerConfig))
    try:
        typed = OmegaConf.merge(OmegaConf.structured(TrainerConfig), part)
    except ValidationError as e:
        raise ConfigError(f"Trainer setting {e.full_key} has a value of the wrong type ({str(e).splitlines()[0]}); "
                          "fix it (conf/trainer/default.yaml lists the settings).") from None
    missing = sorted(OmegaConf.missing_keys(typed))
    if missing:
        raise ConfigError(f"Trainer setting(s) {missing} missing; build the config with "
                          "robopolicy.training.config.trainer_config(overrides), which starts from conf/trainer/default.yaml.")
    return cfg


def trainer_config(overrides: Any = None) -> DictConfig:
    """conf/trainer/default.yaml with ``overrides`` (a mapping; extra keys are kept) merged over it."""
    from robopolicy.defaults import group_config

    over = overrides if isinstance(overrides, DictConfig) else OmegaConf.create(dict(overrides or {}))
    return OmegaConf.merge(group_config("trainer", "default"), over)
