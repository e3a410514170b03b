"""``robopolicy.load``: a trained run directory -> a ready policy (eval mode), never unpickling code.

The policy is rebuilt from the checkpoint's ``config.yaml`` and ``spec.json`` with
``robopolicy.policies.build.build_policy`` and an empty Normalizer; all tensors (network weights and
normalizer statistics) then come from ``model.safetensors``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import CheckpointError, ConfigError
from robopolicy.training.checkpoint import find_checkpoint, load_weights
from robopolicy.utils import resolve_device


def apply_overrides(cfg: DictConfig, overrides: Mapping[str, Any] | Sequence[str] | None) -> DictConfig:
    """Merge overrides given as ``["policy.sampler.steps=3"]`` or ``{"policy.sampler.steps": 3}`` / nested dicts."""
    if not overrides:
        return cfg
    if isinstance(overrides, Mapping):
        dotted = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items() if "." in k]
        nested = {k: v for k, v in overrides.items() if "." not in k}
        patch = OmegaConf.merge(OmegaConf.create(nested), OmegaConf.from_dotlist(dotted))
    elif isinstance(overrides, (list, tuple)):
        bad = [o for o in overrides if not isinstance(o, str) or "=" not in o]
        if bad:
            raise ConfigError(f"Override {bad[0]!r} is not of the form key=value; write e.g. policy.sampler.steps=3.")
        patch = OmegaConf.from_dotlist(list(overrides))
    else:
        raise ConfigError(f"overrides must be a dict or a list of key=value strings, not {type(overrides).__name__}.")
    return OmegaConf.merge(cfg, patch)


def read_checkpoint_config(folder: Path) -> tuple[DictConfig, EnvSpec]:
    """The resolved config and the EnvSpec stored in a checkpoint folder."""
    try:
        cfg = OmegaConf.load(folder / "config.yaml")
        spec = EnvSpec.from_dict(json.loads((folder / "spec.json").read_text()))
    except FileNotFoundError as e:
        raise CheckpointError(f"Checkpoint {str(folder)!r} lacks {Path(e.filename).name}; it was not written by robopolicy-train, retrain it.") from None
    return cfg, spec


def normalizer_keys(cfg: DictConfig, spec: EnvSpec) -> list[str]:
    """Low-dim observation keys the policy normalises: its obs keys (all of the spec's when
    ``policy.obs_keys`` is null) and its goal keys. ``action`` is added by the Normalizer helpers."""
    pol = cfg.get("policy") or {}
    keys = list(pol.get("obs_keys") or spec.obs) + list(pol.get("goal_keys") or [])
    return [k for k in dict.fromkeys(keys) if k in spec.obs and spec.obs[k].kind == "lowdim"]


def load(run_dir: str | os.PathLike, checkpoint: str = "last", device: str = "auto",
         overrides: Mapping[str, Any] | Sequence[str] | None = None):
    """Load a policy from ``run_dir``.

    checkpoint: ``"last"``, ``"best"``, ``"step_N"`` or a checkpoint folder path. overrides: sampler
    settings to change without retraining, e.g. ``["policy.sampler.steps=3"]``. Returns the policy in
    eval mode on ``device`` (``auto|cpu|cuda``).
    """
    from robopolicy.data.normalize import Normalizer
    from robopolicy.policies.build import build_policy

    folder = find_checkpoint(run_dir, str(checkpoint))
    cfg, spec = read_checkpoint_config(folder)
    cfg = apply_overrides(cfg, overrides)
    normalizer = Normalizer.empty_for_spec(spec, normalizer_keys(cfg, spec))  # statistics come with the weights
    policy = build_policy(cfg, spec, normalizer)
    load_weights(policy, folder / "model.safetensors", what="policy built from the config")
    if overrides and "sampler" in (cfg.get("policy") or {}) and hasattr(policy, "set_sampler"):
        policy.set_sampler(cfg.policy.sampler)
    policy = policy.to(resolve_device(device)).eval()
    if callable(getattr(policy, "warmup", None)):  # one-off inference setup now, not in the first chunk
        policy.warmup()
    return policy
