"""Loading trained runs: ``load_run`` (the one loader) and ``robopolicy.load`` (its policy only).

A run is rebuilt from the checkpoint's ``config.yaml`` and ``spec.json``; every tensor (network
weights and normalizer statistics) then comes from ``model.safetensors``. Nothing is unpickled and
the config is data: it is resolved and every ``_target_`` in it checked against
:data:`robopolicy.utils.safe_instantiate.CHECKPOINT_TARGETS` before anything is instantiated; the
weights are checked against the sha256 in ``meta.json`` and for NaN/inf
(:func:`robopolicy.training.checkpoint.read_weights`).

eval, deploy, V-GPS (critic runs) and semantics (transfer controller) load through here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import CheckpointError, ConfigError
from robopolicy.training.checkpoint import find_checkpoint, load_weights, read_meta
from robopolicy.utils import resolve_device
from robopolicy.utils.legacy import fill_legacy_settings
from robopolicy.utils.safe_instantiate import checked_config

Overrides = Mapping[str, Any] | DictConfig | Sequence[str] | None


@dataclass
class RunConfig:
    """What a checkpoint says about itself, checked: ``cfg`` (resolved, overrides merged, every
    ``_target_`` allowlisted), ``task_cfg`` (``cfg.task`` or None), ``spec``, ``path`` (the checkpoint
    folder), ``run_dir``, ``meta`` (meta.json) and ``kind`` (``"policy"`` or ``"critic"``)."""

    cfg: DictConfig
    task_cfg: DictConfig | None
    spec: EnvSpec
    path: Path
    run_dir: Path
    meta: dict = field(default_factory=dict)
    kind: str = "policy"


@dataclass
class Run(RunConfig):
    """A loaded run: :class:`RunConfig` plus ``model`` (eval mode, on the chosen device). ``policy``
    is the model of a policy run; a critic run's model is its Critic."""

    model: Any = None

    @property
    def policy(self):
        if self.kind != "policy":
            raise CheckpointError(f"{str(self.run_dir)!r} is a {self.kind} run, not a policy run; pass a run made by robopolicy-train.")
        return self.model


def apply_overrides(cfg: DictConfig, overrides: Overrides) -> DictConfig:
    """Merge structured overrides into ``cfg``.

    overrides: a nested mapping / DictConfig (``{"policy": {"sampler": {"steps": 3}}}``; a key with dots,
    ``{"policy.sampler.steps": 3}``, addresses the nested key directly), or command-line style strings
    ``["policy.sampler.steps=3"]``. Values keep their types; nothing is turned into strings and back.
    """
    if not overrides:
        return cfg
    out = cfg.copy()
    if isinstance(overrides, DictConfig):
        overrides = OmegaConf.to_container(overrides, resolve=True)
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            if not isinstance(key, str):
                raise ConfigError(f"Override key {key!r} is not a string; write e.g. {{'policy': {{'sampler': {{'steps': 3}}}}}}.")
            OmegaConf.update(out, key, value, merge=True, force_add=True)
        return out
    if isinstance(overrides, (list, tuple)):
        bad = [o for o in overrides if not isinstance(o, str) or "=" not in o]
        if bad:
            raise ConfigError(f"Override {bad[0]!r} is not of the form key=value; write e.g. policy.sampler.steps=3.")
        return OmegaConf.merge(out, OmegaConf.from_dotlist(list(overrides)))
    raise ConfigError(f"overrides must be a dict or a list of key=value strings, not {type(overrides).__name__}.")


def read_checkpoint_config(folder: Path) -> tuple[DictConfig, EnvSpec]:
    """The config and the EnvSpec stored in a checkpoint folder, as data (no target checked yet).

    Settings that a run saved by an earlier version lacks are filled from conf/legacy/
    (:func:`robopolicy.utils.legacy.fill_legacy_settings`), so every later step sees a complete config.
    """
    folder = Path(folder)
    try:
        cfg = OmegaConf.load(folder / "config.yaml")
        spec = EnvSpec.from_dict(json.loads((folder / "spec.json").read_text()))
    except FileNotFoundError as e:
        raise CheckpointError(f"Checkpoint {str(folder)!r} lacks {Path(e.filename).name}; it was not written by robopolicy-train, retrain it.") from None
    except Exception as e:  # noqa: BLE001 - unparsable YAML / JSON, or a spec.json of the wrong shape
        raise CheckpointError(f"Checkpoint {str(folder)!r} has an unreadable config.yaml or spec.json ({type(e).__name__}); "
                              "load another checkpoint (checkpoint=step_<N>).") from None
    if not isinstance(cfg, DictConfig):
        raise CheckpointError(f"{str(folder / 'config.yaml')!r} is not a mapping of settings; load another checkpoint (checkpoint=step_<N>).")
    return fill_legacy_settings(cfg), spec


def normalizer_keys(cfg: DictConfig, spec: EnvSpec) -> list[str]:
    """Low-dim observation keys the policy normalises: its obs keys (all of the spec's when
    ``policy.obs_keys`` is null) and its goal keys. ``action`` is added by the Normalizer helpers."""
    pol = cfg.get("policy") or {}
    keys = list(pol.get("obs_keys") or spec.obs) + list(pol.get("goal_keys") or [])
    return [k for k in dict.fromkeys(keys) if k in spec.obs and spec.obs[k].kind == "lowdim"]


def load_run_config(run_dir: str | os.PathLike, checkpoint: str = "last", overrides: Overrides = None) -> RunConfig:
    """Find the checkpoint, read its config and spec, merge ``overrides`` and check every ``_target_``.

    Builds nothing: callers that need only the task (deploy with a policy server) stop here.
    """
    folder = find_checkpoint(run_dir, str(checkpoint))
    raw, spec = read_checkpoint_config(folder)
    cfg = checked_config(apply_overrides(raw, overrides), source=f"{str(folder / 'config.yaml')!r}")
    meta = read_meta(folder)
    kind = "critic" if meta.get("kind") == "critic" or ("critic" in cfg and "policy" not in cfg) else "policy"
    task_cfg = cfg.task if cfg.get("task") is not None else None
    return RunConfig(cfg=cfg, task_cfg=task_cfg, spec=spec, path=folder, run_dir=Path(run_dir), meta=meta, kind=kind)


def load_run(run_dir: str | os.PathLike, checkpoint: str = "last", overrides: Overrides = None, device: str = "auto") -> Run:
    """Load a trained run: the policy (or critic) in eval mode on ``device`` with its config, task and spec.

    checkpoint: ``"last"``, ``"best"``, ``"step_N"`` or a checkpoint folder path. overrides: structured
    changes that need no retraining (see :func:`apply_overrides`), e.g. ``{"policy": {"sampler":
    {"steps": 3}}}`` or ``{"task": {"env_name": "reach-v3"}}``. The sampler settings reach the policy
    through its constructor (``cfg.policy.sampler``), once.
    """
    rc = load_run_config(run_dir, checkpoint, overrides)
    if rc.kind == "critic":
        from robopolicy.value.build import build_critic_from_checkpoint

        model = build_critic_from_checkpoint(rc.cfg, rc.path)
        what = "critic built from the config"
    else:
        from robopolicy.data.normalize import Normalizer
        from robopolicy.policies.build import build_policy

        normalizer = Normalizer.empty_for_spec(rc.spec, normalizer_keys(rc.cfg, rc.spec))  # statistics come with the weights
        model = build_policy(rc.cfg, rc.spec, normalizer)
        what = "policy built from the config"
    load_weights(model, rc.path / "model.safetensors", what=what)
    model = model.to(resolve_device(device)).eval()
    if callable(getattr(model, "warmup", None)):  # one-off inference setup now, not in the first chunk
        model.warmup()
    return Run(**vars(rc), model=model)


def load(run_dir: str | os.PathLike, checkpoint: str = "last", device: str = "auto", overrides: Overrides = None):
    """Load a policy from ``run_dir`` (``load_run(...).policy``), in eval mode on ``device`` (``auto|cpu|cuda``).

    overrides: sampler settings to change without retraining, e.g. ``["policy.sampler.steps=3"]`` or
    ``{"policy": {"sampler": {"steps": 3}}}``.
    """
    return load_run(run_dir, checkpoint=checkpoint, overrides=overrides, device=device).policy
