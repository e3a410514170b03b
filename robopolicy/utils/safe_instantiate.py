"""Checkpoint configs are data: only allowlisted robopolicy classes may be named by ``_target_``.

Hydra's ``instantiate`` imports and calls whatever a ``_target_`` names, nested entries included
(``_target_: torch.load`` with ``weights_only: false`` runs a pickle). A config read from a
checkpoint someone shared is therefore resolved to plain data first and every ``_target_`` in it,
at any depth, is checked against :data:`CHECKPOINT_TARGETS` before anything is instantiated.

Adding a class (a new policy, net, encoder, critic or task): append its dotted path
``"robopolicy.<module>.<Class>"`` to :data:`CHECKPOINT_TARGETS` in this file. Names are compared as
strings, so the check needs no import of the named module. A caller with classes of its own (a
plugin, a test) passes ``extra_targets=`` instead of changing the tuple.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf

from robopolicy.errors import CheckpointError

# Every class a checkpoint's config.yaml may name: policies, denoising nets, image encoders,
# critics and their algorithms, tasks. Nothing else (no functions, no classes outside robopolicy).
CHECKPOINT_TARGETS: tuple[str, ...] = (
    # policies
    "robopolicy.policies.beso.BESOPolicy",
    "robopolicy.policies.consistency.ConsistencyPolicy",
    "robopolicy.policies.diffusion.DiffusionPolicy",
    "robopolicy.policies.bc.BCPolicy",
    # denoising nets
    "robopolicy.nets.unet1d.ConditionalUnet1D",
    "robopolicy.nets.transformer.TransformerDenoiser",
    "robopolicy.nets.mlp.MLPDenoiser",
    # image encoders
    "robopolicy.nets.encoders.ImageEncoder",
    "robopolicy.nets.encoders.SmallConvEncoder",
    "robopolicy.nets.encoders.SmallConvFlatEncoder",
    # critics
    "robopolicy.value.critic.Critic",
    "robopolicy.value.offline_rl.IQL",
    "robopolicy.value.offline_rl.CalQL",
    # tasks
    "robopolicy.envs.metaworld.MetaWorldTask",
    "robopolicy.envs.multimodal.MultimodalTask",
    "robopolicy.envs.planar_push.PlanarPushTask",
    "robopolicy.envs.dataset_task.DatasetTask",
    "robopolicy.runtime.robot.RobotTask",
)


def iter_targets(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(config key, value) of every ``_target_`` in a plain nested dict/list, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield where, value
            else:
                yield from iter_targets(value, where)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from iter_targets(value, f"{path}[{i}]")


def plain_config(cfg: Any, source: str = "the config") -> Any:
    """``cfg`` (DictConfig, dict, list) resolved to plain Python data; interpolations are evaluated here,
    so a ``_target_`` assembled by ``${...}`` is visible to :func:`check_targets`."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        node = cfg
    else:
        node = OmegaConf.create(cfg)
    try:
        return OmegaConf.to_container(node, resolve=True)
    except Exception as e:  # noqa: BLE001 - an interpolation that cannot be resolved (missing key, unknown resolver)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{source} has an interpolation that cannot be resolved ({first}); "
                              "use the config.yaml robopolicy-train wrote, unedited.") from None


def check_targets(cfg: Any, source: str = "the config", extra_targets: Iterable[str] = ()) -> dict:
    """Resolve ``cfg`` and refuse it unless every ``_target_`` (nested ones too) is allowlisted.

    Returns the resolved config as a plain dict; build from that, not from ``cfg``, so that what was
    checked is what gets instantiated. Raises CheckpointError naming the first offending key.
    """
    data = plain_config(cfg, source)
    if not isinstance(data, dict):
        raise CheckpointError(f"{source} is not a mapping of settings; use the config.yaml robopolicy-train wrote.")
    allowed = set(CHECKPOINT_TARGETS) | set(extra_targets)
    for key, target in iter_targets(data):
        if not isinstance(target, str) or target not in allowed:
            raise CheckpointError(f"{source} names {target!r} at {key}, which is not a robopolicy class allowed in checkpoints; "
                                  "load only checkpoints you trust, or add the class to CHECKPOINT_TARGETS in "
                                  "robopolicy/utils/safe_instantiate.py if it is your own.")
    return data


def checked_config(cfg: Any, source: str = "the config", extra_targets: Iterable[str] = ()) -> DictConfig:
    """:func:`check_targets`, returned as a DictConfig (resolved, every target allowlisted)."""
    return OmegaConf.create(check_targets(cfg, source, extra_targets))
