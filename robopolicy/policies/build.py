"""``build_policy(cfg, spec, normalizer)``: the one place a policy is constructed from config."""

from __future__ import annotations

import warnings

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import ConfigError
from robopolicy.policies.base import Policy


def build_policy(cfg: DictConfig, spec: EnvSpec, normalizer) -> Policy:
    """cfg.policy (with ``_target_``) and cfg.net -> a ready Policy holding ``normalizer``.

    ``cfg.net`` is passed as ``net_cfg`` (a plain dict; the policy instantiates it with its sizes).
    """
    if "policy" not in cfg or cfg.policy is None or "_target_" not in cfg.policy:
        raise ConfigError("The config has no policy with a _target_; pick one with policy=beso, policy=diffusion or policy=bc.")
    net = cfg.get("net")
    net_cfg = OmegaConf.to_container(net, resolve=True) if isinstance(net, DictConfig) else net
    # Partial first, then call: spec (a dataclass) and normalizer (a Module) must not pass through OmegaConf.
    factory = instantiate(cfg.policy, _partial_=True, _convert_="all")
    policy = factory(spec=spec, normalizer=normalizer, net_cfg=net_cfg)
    if not isinstance(policy, Policy):
        raise ConfigError(f"policy._target_ {cfg.policy._target_!r} does not build a robopolicy Policy; point it at a Policy class.")
    _warn_few_step_mlp(net_cfg, cfg.policy)
    return policy


def _warn_few_step_mlp(net_cfg, policy_cfg) -> None:
    """The MLP denoiser underfits multimodal chunks at 1-3 sampling steps (measured: BESO-3 0.09 vs 1.00
    with the U-Net on the multimodal task, docs/results/multimodal.md); say so instead of failing silently."""
    steps = OmegaConf.select(policy_cfg, "sampler.steps")
    if str((net_cfg or {}).get("_target_", "")).endswith("MLPDenoiser") and steps is not None and int(steps) <= 3:
        warnings.warn(f"net=mlp with a {int(steps)}-step sampler underfits multimodal action chunks; "
                      "use net=unet for few-step sampling (or more sampler steps).", UserWarning, stacklevel=3)
