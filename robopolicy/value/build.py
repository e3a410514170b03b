"""Build a :class:`~robopolicy.value.critic.Critic` from a config (Hydra ``_target_``), for training or
from a checkpoint folder (config.yaml + spec.json; the normalizer is rebuilt empty and filled by
the safetensors load)."""

from __future__ import annotations

import json
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from robopolicy.data.normalize import Normalizer
from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import CheckpointError
from robopolicy.value.critic import Critic


def critic_keys(cfg: DictConfig, spec: EnvSpec) -> tuple[list[str], list[str]]:
    """(obs_keys, goal_keys) of ``cfg.critic``; obs_keys default to every key of the spec."""
    obs_keys = list(cfg.critic.get("obs_keys") or spec.obs)
    goal_keys = list(cfg.critic.get("goal_keys") or [])
    return obs_keys, goal_keys


def lowdim_norm_keys(cfg: DictConfig, spec: EnvSpec) -> list[str]:
    obs_keys, goal_keys = critic_keys(cfg, spec)
    return [k for k in dict.fromkeys(obs_keys + goal_keys) if k in spec.obs and spec.obs[k].kind == "lowdim"]


def build_critic(cfg: DictConfig, spec: EnvSpec, normalizer: Normalizer) -> Critic:
    """Instantiate ``cfg.critic`` (its ``algo`` too) with the spec and a fitted normalizer."""
    obs_keys, goal_keys = critic_keys(cfg, spec)
    # _partial_: spec (a dataclass) and the normalizer must reach the constructor as objects, not
    # be converted to configs by Hydra; nested `algo` is still instantiated from its _target_.
    factory = instantiate(cfg.critic, _partial_=True, _convert_="all")
    return factory(spec=spec, normalizer=normalizer, obs_keys=obs_keys, goal_keys=goal_keys or None)


def build_critic_from_checkpoint(cfg: DictConfig, folder: Path) -> Critic:
    spec_path = Path(folder) / "spec.json"
    if not spec_path.is_file():
        raise CheckpointError(f"Checkpoint {str(folder)!r} has no spec.json; it was not written by robopolicy-train-critic.")
    spec = EnvSpec.from_dict(json.loads(spec_path.read_text()))
    return build_critic(cfg, spec, Normalizer.empty_for_spec(spec, lowdim_norm_keys(cfg, spec)))


