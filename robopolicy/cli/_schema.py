"""What each command's config accepts: value types and ranges, and its open sections.

The YAML under ``conf/`` holds every default; this module holds only the constraints on those
values, one table per command (keyed by the config name), so that ``episodes=abc``,
``episodes=0`` or ``rate_hz=-5`` stop with one sentence before any work instead of a traceback,
or a silent replacement by a default. ``_hydra.hydra_command`` checks the composed config
against the table of its command.

An *open section* is a mapping whose keys come from somewhere else (the checkpoint's saved
``task`` and ``policy.sampler``), so ``conf/<command>.yaml`` leaves it empty; keys given under it on
the command line are added (Hydra's ``++``) instead of being refused as unknown.

Hand-written because OmegaConf's structured configs check types but not ranges, and a typed
dataclass per command would repeat the YAML's defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from robopolicy.errors import ConfigError

_ABSENT = object()


@dataclass(frozen=True)
class Rule:
    """One value's constraint. ``kind``: int | float | bool | str | choice."""

    kind: str
    low: float | None = None            # inclusive lower bound
    above: float | None = None          # exclusive lower bound
    high: float | None = None           # inclusive upper bound
    below: float | None = None          # exclusive upper bound
    choices: tuple[str, ...] = ()
    nullable: bool = False

    def describe(self) -> str:
        if self.kind == "choice":
            text = "one of " + ", ".join(self.choices)
        else:
            text = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}[self.kind]
            bounds = [f">= {_num(self.low)}" if self.low is not None else None,
                      f"> {_num(self.above)}" if self.above is not None else None,
                      f"<= {_num(self.high)}" if self.high is not None else None,
                      f"< {_num(self.below)}" if self.below is not None else None]
            bounds = [b for b in bounds if b]
            if bounds:
                text += " " + " and ".join(bounds)
        return text + (" (or null)" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str)
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return ((self.low is None or value >= self.low) and (self.above is None or value > self.above)
                and (self.high is None or value <= self.high) and (self.below is None or value < self.below))

    def example(self) -> str:
        """A value this rule accepts, for the error's fix when the config has none to show."""
        if self.kind == "choice":
            return self.choices[0]
        if self.kind == "bool":
            return "true"
        if self.kind == "str":
            return "<text>"
        start = self.low if self.low is not None else (self.above + 1 if self.above is not None else 1)
        if self.high is not None or self.below is not None:
            top = self.high if self.high is not None else self.below
            start = min(start, top) if self.high is not None else (start + top) / 2
        return _num(int(start) if self.kind == "int" else float(start))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and not isinstance(x, float) else f"{x:g}"


def Int(low=None, above=None, high=None, nullable=False) -> Rule:
    return Rule("int", low=low, above=above, high=high, nullable=nullable)


def Float(low=None, above=None, high=None, below=None, nullable=False) -> Rule:
    return Rule("float", low=low, above=above, high=high, below=below, nullable=nullable)


def Choice(*choices: str, nullable=False) -> Rule:
    return Rule("choice", choices=tuple(choices), nullable=nullable)


BOOL = Rule("bool")
NULL_BOOL = Rule("bool", nullable=True)
DEVICE = Rule("str")  # auto | cpu | cuda | cuda:N: robopolicy.utils.resolve_device names the fix
LOG_LEVEL = Choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
WANDB_MODE = Choice("online", "offline", "disabled")


@dataclass(frozen=True)
class Schema:
    rules: Mapping[str, Rule]
    open_sections: tuple[str, ...] = ()


TASK = {
    "task.max_episode_steps": Int(low=1, nullable=True),
    "task.control_hz": Float(above=0, nullable=True),
    "task.obs_horizon": Int(low=1),
    "task.action_horizon": Int(low=1),
    "task.exec_horizon": Int(low=1),
    "task.eval.episodes": Int(low=1),
    "task.eval.num_envs": Int(low=1),
    "task.image.enabled": BOOL,
    "task.image.size": Int(low=8),
}
SAMPLER = {"policy.sampler.steps": Int(low=1)}
TRAINER = {
    "steps": Int(low=1),
    "batch_size": Int(low=1),
    "num_workers": Int(low=0),
    "device": DEVICE,
    "seed": Int(low=0),
    "optim.lr": Float(above=0),
    "optim.weight_decay": Float(low=0),
    "optim.warmup_steps": Int(low=0),
    "optim.grad_clip": Float(low=0),
    "ema.enabled": BOOL,
    "ema.power": Float(above=0),
    "ema.max_decay": Float(low=0, high=1),
    "val_every": Int(low=0),
    "ckpt_every": Int(low=0),
    "keep_last": Int(low=1),
    "log_every": Int(low=1),
    "progress": BOOL,
    "wandb.mode": WANDB_MODE,
}
NORM = {"norm.obs": Choice("minmax", "meanstd", "identity"), "norm.action": Choice("minmax", "meanstd", "identity")}
TRAIN = {
    **TASK, **SAMPLER, **TRAINER, **NORM,
    "dataset": Rule("str"),
    "run_dir": Rule("str"),
    "val_fraction": Float(low=0, below=1),
    "eval.every": Int(low=0),
    "eval.episodes": Int(low=1),
    "eval.num_envs": Int(low=1),
    "eval.seed": Int(low=0),
    "final_eval.episodes": Int(low=0),
    "final_eval.num_envs": Int(low=1),
    "final_eval.seed": Int(low=0),
}

SCHEMAS: dict[str, Schema] = {
    "collect": Schema({
        **TASK,
        "episodes": Int(low=1),
        "noise": Float(low=0),
        "fail_fraction": Float(low=0, high=1),
        "fail_walk_std": Float(low=0),
        "fail_prefix": Float(low=0, high=1),
        "out": Rule("str", nullable=True),
        "seed": Int(low=0),
        "stop_after_success": Int(low=0, nullable=True),
        "overwrite": BOOL,
        "render": NULL_BOOL,
        "progress": BOOL,
    }),
    "train": Schema(TRAIN),
    "quickstart": Schema({**TRAIN, "demos": Int(low=1), "noise": Float(low=0), "out_dir": Rule("str")}),
    "train_critic": Schema({
        **TASK, **TRAINER, **NORM,
        "dataset": Rule("str"),
        "run_dir": Rule("str"),
        "gamma": Float(above=0, high=1),
        "n_step": Int(low=1),
        "reward.horizon": Int(low=1),
        "reward.scheme": Choice("binary", "negative"),
        "val_fraction": Float(low=0, below=1),
        "critic.ensemble": Int(low=1),
    }),
    "eval": Schema({
        **TASK, **SAMPLER,
        "checkpoint": Rule("str"),
        "episodes": Int(low=1, nullable=True),
        "seed": Int(low=0),
        "num_envs": Int(low=1, nullable=True),
        "vector": Choice("sync", "async"),
        "video_episodes": Int(low=0),
        "device": DEVICE,
        "progress": BOOL,
        "max_episode_steps": Int(low=1, nullable=True),
        "wandb.mode": WANDB_MODE,
        "steer.k": Int(low=1),
        "steer.beta": Float(low=0),
    }, open_sections=("task", "policy.sampler")),
    "deploy": Schema({
        **TASK, **SAMPLER,
        "checkpoint": Rule("str"),
        "device": DEVICE,
        "rate_hz": Float(above=0),
        "duration_s": Float(low=0),
        "seed": Int(low=0),
        "plot": BOOL,
        "log_level": LOG_LEVEL,
        "runner.episodes": Int(low=0),
        "runner.inference": Choice("thread", "process"),
        "runner.merge": Choice("latest", "average", "ensemble"),
        "runner.new_weight": Float(above=0, high=1),
        "runner.ensemble_m": Float(low=0),
        "runner.replan_every": Int(low=0),
        "runner.wait_for_chunk_s": Float(low=0),
        "runner.hold_after_s": Float(above=0, nullable=True),  # null: derived from the re-plan period
        "runner.stop_after_s": Float(above=0, nullable=True),
        "runner.first_chunk_timeout_s": Float(above=0),
        "runner.spin_s": Float(low=0),
        "runner.deadline_frac": Float(above=0, high=1),
        "runner.torch_threads": Int(low=1, nullable=True),
        "runner.server_timeout_s": Float(above=0),
        "robot.control_hz": Float(above=0, nullable=True),
        "robot.obs_latency_s": Float(low=0),
        "robot.camera_hz": Float(above=0, nullable=True),
        "robot.max_episode_steps": Int(low=1, nullable=True),
    }, open_sections=("task", "policy.sampler")),
    "policy_server": Schema({
        **SAMPLER,
        "checkpoint": Rule("str"),
        "device": DEVICE,
        "bind": Rule("str", nullable=True),      # null: serve only on openpi=
        "openpi": Rule("str", nullable=True),
        "max_message_bytes": Int(low=1),
        "workers": Int(low=1),
        "per_client": Int(low=1),
        "max_queue": Int(low=1),
        "max_clients": Int(low=1),
        "torch_threads": Int(low=1, nullable=True),
        "log_level": LOG_LEVEL,
    }, open_sections=("policy.sampler",)),
    "semantics": Schema({
        **TASK,
        "mode": Choice("train", "active", "transfer"),
        "seed": Int(low=0),
        "device": DEVICE,
        "budget": Int(low=1),
        "per_round": Int(low=1),
        "segment_length": Int(low=1),
        "pool_stride": Int(low=1),
        "annotation_noise": Float(low=0),
        "transition_noise": Float(low=0),
        "augment_dynamics.samples": Int(low=0),
        "augment_dynamics.max_spread": Float(above=0),
        "data.episodes": Int(low=1),
        "data.behaviour_noise": Float(low=0),
        "data.reach_steps": Int(low=0),
        "data.test_episodes": Int(low=1),
        "mapper.members": Int(low=1),
        "mapper.n_frames": Int(low=1),
        "mapper.hidden_dim": Int(low=1),
        "trainer.batch_size": Int(low=1),
        "vae_trainer.steps": Int(low=1),
        "vae_trainer.batch_size": Int(low=1),
        "transfer.episodes": Int(low=1),
    }),
}


def schema_for(config_name: str) -> Schema:
    """The command's schema (an empty one for a config without a table)."""
    return SCHEMAS.get(config_name, Schema({}))


def check(cfg: DictConfig, schema: Schema, examples: DictConfig | None = None, rename: str | None = None) -> None:
    """Raise ConfigError for the first value in ``cfg`` that its rule refuses.

    Keys the config does not have, and mandatory values still ``???``, are skipped (the command
    names a missing mandatory value itself). ``examples``: a config whose values show the fix;
    ``rename``: the key to name in the message (when checking one value on its own).
    """
    for key, rule in schema.rules.items():
        value = _select(cfg, key)
        if value is _ABSENT or rule.accepts(value):
            continue
        example = _select(examples, key) if examples is not None else _ABSENT
        shown = _show(example, quote=False) if example is not _ABSENT and rule.accepts(example) else rule.example()
        name = rename or key
        raise ConfigError(f"{name} must be {rule.describe()}, got {_show(value)}; pass e.g. {name}={shown}.")


def _select(cfg: DictConfig, key: str) -> Any:
    try:
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
    except MissingMandatoryValue:  # ``???``: the command itself says what to add
        return _ABSENT
    if isinstance(value, DictConfig) or OmegaConf.is_list(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _show(value: Any, quote: bool = True) -> str:
    """A value as written on the command line (strings quoted in the "got ..." part only)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) and quote else str(value)
