"""A default written both in a YAML config and in the code it configures must say the same thing.

Every YAML under conf/ with a ``_target_`` is compared, key by key, with the keyword defaults of the
callable it names (a class's ``__init__``, a function, or a dataclass's fields); the runner's YAML
is compared with ``RunnerConfig``. Interpolations (``${...}``) and required values (``???``) are
skipped: they carry no default of their own. The test fails on the first disagreement, naming
the file, the key and both values.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from robopolicy.cli._hydra import CONF_DIR

YAMLS = sorted(p for p in Path(CONF_DIR).rglob("*.yaml") if "hydra" not in p.relative_to(CONF_DIR).parts)


def _target(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _code_defaults(obj) -> dict:
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out
    fns = [c.__init__ for c in reversed(obj.__mro__) if "__init__" in vars(c)] if inspect.isclass(obj) else [obj]
    out = {}
    for fn in fns:  # base classes first: a subclass's own default wins
        out.update({n: p.default for n, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty})
    return out


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _yaml_defaults(node) -> dict:
    """Top-level keys with a literal value (no interpolation, not required, not a nested config)."""
    out = {}
    for key in node:
        if key == "_target_" or OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key):
            continue
        value = node[key]
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=False)
            if isinstance(value, dict):
                continue  # a nested config (encoder, sampler, ...): compared where it is instantiated
        out[key] = value
    return out


def _pairs():
    for path in YAMLS:
        node = OmegaConf.load(path)
        if not isinstance(node, dict) and not OmegaConf.is_dict(node):
            continue
        if "_target_" in node:
            yield path, node, _target(node["_target_"])
    from robopolicy.runtime.runner import RunnerConfig

    yield Path(CONF_DIR) / "runner" / "default.yaml", OmegaConf.load(Path(CONF_DIR) / "runner" / "default.yaml"), RunnerConfig


@pytest.mark.parametrize("path,node,obj", list(_pairs()), ids=lambda x: str(Path(x).relative_to(CONF_DIR)) if isinstance(x, Path) else "")
def test_yaml_and_code_defaults_agree(path, node, obj):
    code = _code_defaults(obj)
    for key, value in _yaml_defaults(node).items():
        if key in code:
            assert _plain(value) == _plain(code[key]), f"{path.relative_to(CONF_DIR)}: {key} is {value!r} in the YAML but {code[key]!r} in {obj.__qualname__}"


CHECKPOINTED_GROUPS = ("policy", "net", "critic", "task", "encoder")


@pytest.mark.parametrize("path", [p for p in YAMLS if p.relative_to(CONF_DIR).parts[0] in CHECKPOINTED_GROUPS],
                         ids=lambda p: str(p.relative_to(CONF_DIR)))
def test_every_class_a_checkpoint_can_name_is_allowlisted(path):
    """A run's config.yaml carries these groups; a class missing from the allowlist makes its runs unloadable."""
    from robopolicy.utils.safe_instantiate import CHECKPOINT_TARGETS, iter_targets

    for key, target in iter_targets(OmegaConf.to_container(OmegaConf.load(path), resolve=False)):
        assert target in CHECKPOINT_TARGETS, f"{path.relative_to(CONF_DIR)}: {key} = {target} is not in CHECKPOINT_TARGETS"
