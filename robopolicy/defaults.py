"""The one loader of the configs' defaults for code that builds an object outside a Hydra command.

Each default is written once, in a YAML file under ``conf/`` (or ``tasks/``). The classes it
configures (policies, nets, critics, tasks, :class:`~robopolicy.runtime.runner.RunnerConfig`, the
trainer) take those values as required arguments, with type annotations and no defaults of their
own. A Hydra command composes the files itself; tests, tools and library callers get the same
values here::

    group_config("task", "multimodal", {"max_episode_steps": 40})           # tasks/multimodal.yaml
    group_config("policy", "bc", {"hidden_dims": [32]}, context={"task": {...}})
    group_config("runner", "default", {"rate_hz": 50, "duration_s": 1, "seed": 0})
    encoder_config("small_cnn", {"rgb": {"channels": [8, 8]}})            # a policy's encoder block + conf/encoder/small_cnn.yaml

The file is composed with Hydra's compose API (so its own ``defaults:`` list applies and a user's
``ROBOPOLICY_CONFIG_DIR`` folders are searched), ``overrides`` are merged over it, and the result is
resolved. An interpolation to a key outside the group (``${task.obs_horizon}``, ``${rate_hz}``) is
resolved against ``context``, or replaced by an override of the same key.
"""

from __future__ import annotations

from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from robopolicy import resources
from robopolicy.errors import ConfigError


def _compose(config_name: str) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a running command: its own search path
        return compose(config_name)
    dirs = resources.user_config_dirs()
    searchpath = [f"hydra.searchpath=[{','.join('file://' + str(d) for d in dirs)}]"] if dirs else []
    with initialize_config_dir(config_dir=str(resources.conf_dir()), version_base="1.3"):
        return compose(config_name, overrides=searchpath)


def group_node(group: str, name: str) -> DictConfig:
    """``<group>/<name>.yaml`` composed as a command composes it (its ``defaults:`` list applied), with its
    interpolations kept: for code that assembles a whole config (task, policy, net) and resolves it later::

        cfg = OmegaConf.create({"task": ..., "policy": group_node("policy", "beso"), "net": group_node("net", "mlp")})

    Raises ConfigError when the file does not exist.
    """
    from hydra.errors import MissingConfigException

    try:
        composed = _compose(f"{group}/{name}")
    except MissingConfigException:
        raise ConfigError(f"There is no config {group}/{name}.yaml; pick a file of the {group}/ folder.") from None
    node = OmegaConf.select(composed, group.replace("/", "."))
    return OmegaConf.create(OmegaConf.to_container(node, resolve=False))


def group_config(group: str, name: str, overrides: Mapping[str, Any] | None = None,
                 context: Mapping[str, Any] | None = None) -> DictConfig:
    """``<group>/<name>.yaml`` composed, ``overrides`` merged over it, resolved (``_target_`` kept).

    ``group`` is a config folder (``policy``, ``task``, ``runner``, ``semantics/strategy``, ...).
    Raises ConfigError when the file does not exist or an interpolation has no value.
    """
    path = group.replace("/", ".")
    root = OmegaConf.merge(OmegaConf.create(dict(context or {})), {})
    OmegaConf.update(root, path, group_node(group, name), force_add=True)
    node = OmegaConf.select(root, path)
    OmegaConf.set_struct(node, False)
    for key, value in (overrides or {}).items():
        OmegaConf.update(node, key, value, merge=True, force_add=True)
    try:
        return OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    except InterpolationResolutionError as e:
        key = getattr(e, "full_key", None) or "a value"
        raise ConfigError(f"{key} of {group}/{name}.yaml refers to a key outside the file ({e.__class__.__name__}: "
                          f"{str(e).splitlines()[0]}); pass it in overrides or context.") from None


def encoder_config(image_encoder: str | None = None, overrides: Mapping[str, Any] | None = None,
                   policy: str = "beso") -> DictConfig:
    """A policy's ``encoder`` block (every :class:`~robopolicy.nets.encoders.ObsEncoder` setting) as a command composes it.

    conf/policy/<policy>.yaml's block (conf/obs_encoder/default.yaml), conf/encoder/<image_encoder>.yaml merged over it (what
    ``+encoder@policy.encoder=<image_encoder>`` does), then ``overrides`` (nested mappings merge)::

        ObsEncoder(spec, keys, horizon, **encoder_config("small_cnn", {"rgb": {"feature_dim": 8}}))
    """
    block = OmegaConf.select(_compose(f"policy/{policy}"), "policy.encoder")
    merged = OmegaConf.merge(OmegaConf.to_container(block, resolve=True),
                             group_config("encoder", image_encoder) if image_encoder else {}, dict(overrides or {}))
    return OmegaConf.create(OmegaConf.to_container(merged, resolve=True))


HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def constructor_kwargs(cfg: Mapping[str, Any]) -> dict:
    """A resolved config as plain keyword arguments: without Hydra's keys (``_target_``, ``_partial_``, ...)
    and a task's ``meta_keys``."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    drop = {*HYDRA_KEYS, "meta_keys", *plain.get("meta_keys", [])}
    return {k: v for k, v in plain.items() if k not in drop}
