"""Each default is written once: in the YAML under conf/ (tasks/ for the task group), never also in code.

Every node with a ``_target_`` in every YAML (at any depth: a critic's ``algo``, an encoder's
``rgb``) is compared with the callable it names (a class's ``__init__`` through its bases, a
function, or a dataclass's fields): a key the YAML sets must have no default in the code. Nested
settings a constructor hands on (a policy's ``sampler``, a critic's ``head``, the ``encoder`` block of
a policy or critic: ObsEncoder's settings) are compared with
the class that receives them. The runner's and the trainer's typed schemas must list exactly the
keys of their YAML files.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from robopolicy import resources
from robopolicy.errors import ConfigError

CONF = resources.conf_dir()
SPECIAL = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_", "defaults", "meta_keys"}


def _yamls() -> list[Path]:
    """Every config file; conf/task is a link to tasks/ in the checkout, a folder in a wheel."""
    files = {p.resolve(): p for p in CONF.rglob("*.yaml") if "hydra" not in p.relative_to(CONF).parts}
    files.update({p.resolve(): CONF / "task" / p.name for p in resources.task_dir().glob("*.yaml")})
    return sorted(files.values())


YAMLS = _yamls()


def _rel(path: Path) -> str:
    return str(path.relative_to(CONF))


def _target(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def code_defaults(obj) -> dict:
    """Parameter name -> default in code, over a class's whole __init__ chain (or a function / dataclass)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(obj)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    fns = [c.__init__ for c in obj.__mro__ if "__init__" in vars(c)] if inspect.isclass(obj) else [obj]
    out, declared = {}, set()
    for fn in fns:  # most derived first: a parameter a subclass declares itself shadows its base's default
        params = {n: p for n, p in inspect.signature(fn).parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        out.update({n: p.default for n, p in params.items() if n not in declared and p.default is not inspect.Parameter.empty})
        declared |= set(params)
    return out


def _receiver(owner, key: str, value):
    """The class a constructor hands a nested setting to, for the settings compared here."""
    from robopolicy.nets.augment import ImageAugment
    from robopolicy.nets.encoders import ObsEncoder
    from robopolicy.policies.beso import BESOPolicy
    from robopolicy.policies.common import ChunkPolicy
    from robopolicy.policies.consistency import ConsistencyPolicy
    from robopolicy.policies.diffusion import DiffusionPolicy
    from robopolicy.policies.samplers import EDM_SAMPLERS, ConsistencySampler, DiscreteSampler
    from robopolicy.value.critic import Critic, ValueHead

    if not inspect.isclass(owner) or not isinstance(value, dict):
        return None
    if key == "head" and issubclass(owner, Critic):
        return ValueHead
    if key == "encoder" and issubclass(owner, (ChunkPolicy, Critic)):
        return ObsEncoder
    if key == "augment" and issubclass(owner, ObsEncoder):
        return ImageAugment
    if key == "sampler" and issubclass(owner, ConsistencyPolicy):
        return ConsistencySampler
    if key == "sampler" and issubclass(owner, BESOPolicy):
        return EDM_SAMPLERS[value["name"]]
    if key == "sampler" and issubclass(owner, DiffusionPolicy):
        return DiscreteSampler
    return None


def _handed_on(target) -> list:
    """What a target hands its YAML keys on to, beside its own signature: make_sim_robot passes its
    ``**kwargs`` to SimRobot, a PlanarPushTask its environment settings to PlanarPushEnv."""
    from robopolicy.envs.planar_push import PlanarPushEnv, PlanarPushTask
    from robopolicy.runtime.sim_robot import SimRobot, make_sim_robot

    return {make_sim_robot: [SimRobot], PlanarPushTask: [PlanarPushEnv]}.get(target, [])


def doubles(node: dict, where: str, owner=None) -> list[str]:
    """'file: key' for every key of ``node`` (and the nodes below it) that the code defaults too."""
    out = []
    target = _target(node["_target_"]) if "_target_" in node else owner
    skip = SPECIAL | set(node.get("meta_keys", []))
    defaults = {}  # key -> (class or function that defaults it, default)
    for callee in ([target, *_handed_on(target)] if target is not None else []):
        for key, value in code_defaults(callee).items():
            defaults.setdefault(key, (callee, value))
    for key, value in node.items():
        if key in skip:
            continue
        if key in defaults:
            callee, default = defaults[key]
            out.append(f"{where}{key} is set in the YAML and defaulted in {callee.__qualname__} ({default!r})")
        if isinstance(value, dict):
            inner = value if "_target_" in value else None
            receiver = _receiver(target, key, value)
            if inner is not None or receiver is not None:
                out += doubles(value, f"{where}{key}.", receiver)
    return out


def _raw(path: Path) -> dict:
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return node if isinstance(node, dict) else {}


def _nodes_with_targets(node, where=""):
    """Top-most nodes with a _target_ (their own nested ones are walked by `doubles`)."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield where, node
            return
        for k, v in node.items():
            yield from _nodes_with_targets(v, f"{where}{k}.")


@pytest.mark.parametrize("path", YAMLS, ids=_rel)
def test_no_default_is_written_in_the_yaml_and_in_code(path):
    found = [f"{_rel(path)}: {d}" for where, node in _nodes_with_targets(_raw(path)) for d in doubles(node, where)]
    assert found == [], "; ".join(found) + ". Delete the code's default: the YAML is the one place."


def test_the_check_finds_a_default_written_twice():
    """The walk above must see a doubled key, also in a nested target and a handed-on sampler."""
    node = {"_target_": "robopolicy.value.offline_rl.IQL", "expectile": 0.7, "polyak": 0.005, "needs_value": True}
    assert doubles(node, "algo.") == ["algo.needs_value is set in the YAML and defaulted in IQL (True)"]


def test_the_check_follows_make_sim_robot_to_sim_robot():
    node = {"_target_": "robopolicy.runtime.sim_robot.make_sim_robot", "render": None, "time_fn": None}
    assert [d.split(" (")[0] for d in doubles(node, "")] == ["time_fn is set in the YAML and defaulted in SimRobot"]


def test_a_subclass_parameter_without_a_default_shadows_its_base_default():
    from robopolicy.runtime.sim_robot import SimRobot

    assert "hold" not in code_defaults(SimRobot)


def test_the_check_follows_a_policy_sampler_to_its_class():
    node = {"_target_": "robopolicy.policies.beso.BESOPolicy", "sampler": {"name": "dpmsolver++", "steps": 3, "solver_order": 2}}
    assert doubles(node, "") == ["sampler.solver_order is set in the YAML and defaulted in EDMDPMSolverSampler (2)"]


def test_the_check_follows_an_encoder_block_to_obs_encoder():
    from robopolicy.nets.encoders import ObsEncoder
    from robopolicy.policies.bc import BCPolicy

    assert _receiver(BCPolicy, "encoder", {"num_kp": 32}) is ObsEncoder


def test_the_check_follows_an_encoder_augment_block_to_image_augment():
    from robopolicy.nets.augment import ImageAugment
    from robopolicy.nets.encoders import ObsEncoder

    assert _receiver(ObsEncoder, "augment", {"shift_px": 4}) is ImageAugment


def test_observation_encoder_settings_are_written_once():
    """conf/obs_encoder/*.yaml (the policies' and critics' encoder block) and conf/encoder/*.yaml (merged over it)
    have no _target_ of their own, so the walk above misses them."""
    from robopolicy.nets.encoders import ObsEncoder

    files = [p for p in YAMLS if _rel(p).startswith(("encoder/", "obs_encoder/"))]
    assert [_rel(p) for p in files if _rel(p).startswith("obs_encoder/")] == ["obs_encoder/default.yaml"]
    found = [d for p in files for d in doubles(_raw(p), f"{_rel(p)}: ", ObsEncoder)]
    assert found == []


def _semantics_blocks() -> list:
    """conf/semantics.yaml's blocks that have no _target_ of their own, and conf/semantics/real_env/*.yaml,
    with the class each one configures."""
    from robopolicy.semantics.data import collect_real_episodes
    from robopolicy.semantics.mapper import MapperEnsemble, train_mapper
    from robopolicy.semantics.real_env import RealPlanarPushEnv
    from robopolicy.semantics.real_env_metaworld import RealMetaWorldEnv
    from robopolicy.semantics.vae import ConvVAE

    raw = _raw(CONF / "semantics.yaml")
    blocks = [(f"semantics.yaml: {key}.", raw[key], cls) for key, cls in (
        ("mapper", MapperEnsemble), ("mapper", train_mapper), ("vae", ConvVAE), ("data", collect_real_episodes))]
    for p in sorted((CONF / "semantics" / "real_env").glob("*.yaml")):
        blocks.append((f"{_rel(p)}: ", _raw(p), RealMetaWorldEnv if p.stem == "metaworld" else RealPlanarPushEnv))
    return blocks


def test_semantics_settings_are_written_once():
    found = [d for where, node, cls in _semantics_blocks() for d in doubles(node, where, cls)]
    assert found == []


ENCODER_OWNERS = [p for p in YAMLS if _rel(p).startswith(("policy/", "critic/"))]
HORIZONS = {"task": {"obs_horizon": 2, "action_horizon": 16, "exec_horizon": 8}}


@pytest.mark.parametrize("path", ENCODER_OWNERS, ids=_rel)
def test_every_policy_and_critic_gets_every_encoder_setting(path):
    """The code has no encoder defaults, so each composed policy and critic must carry all of ObsEncoder's settings."""
    from robopolicy.defaults import group_config
    from robopolicy.nets.encoders import encoder_setting_names

    cfg = group_config(path.parent.name, path.stem, context=HORIZONS)
    assert sorted(cfg["encoder"]) == sorted(encoder_setting_names())


@pytest.mark.parametrize("path", ENCODER_OWNERS, ids=_rel)
def test_no_policy_or_critic_yaml_writes_encoder_values_of_its_own(path):
    """The encoder block is written once, in conf/obs_encoder/default.yaml; a policy or critic only names it."""
    raw = _raw(path)
    assert "encoder" not in raw


def _schema_keys(schema) -> dict:
    return {f.name: _schema_keys(f.type) if dataclasses.is_dataclass(f.type) else None for f in dataclasses.fields(schema)}


def _yaml_keys(node) -> dict:
    return {k: _yaml_keys(v) if isinstance(v, dict) and v else None for k, v in node.items()}


def test_runner_config_has_exactly_the_keys_of_its_yaml():
    from robopolicy.runtime.runner import RunnerConfig

    yaml_keys = set(_raw(CONF / "runner" / "default.yaml"))
    assert {f.name for f in dataclasses.fields(RunnerConfig)} == yaml_keys


def test_runner_config_has_no_defaults_of_its_own():
    from robopolicy.runtime.runner import RunnerConfig

    assert code_defaults(RunnerConfig) == {}


def test_trainer_schema_has_exactly_the_keys_of_its_yaml():
    from robopolicy.training.config import TrainerConfig

    assert _schema_keys(TrainerConfig) == _yaml_keys(_raw(CONF / "trainer" / "default.yaml"))


def test_runner_config_from_defaults_reads_the_yaml():
    from robopolicy.runtime.runner import RunnerConfig

    cfg = RunnerConfig.from_defaults(rate_hz=20.0, duration_s=1.0, seed=3, merge="average")
    yaml = _raw(CONF / "runner" / "default.yaml")
    assert (cfg.rate_hz, cfg.seed, cfg.merge, cfg.first_chunk_timeout_s) == (20.0, 3, "average", yaml["first_chunk_timeout_s"])


def test_runner_config_refuses_missing_settings():
    from robopolicy.runtime.runner import RunnerConfig

    with pytest.raises(ConfigError, match=r"\['episodes', .*missing; start from conf/runner/default.yaml"):
        RunnerConfig.from_mapping({"rate_hz": 10.0, "duration_s": 1.0})


def test_runner_defaults_need_the_command_level_values():
    from robopolicy.runtime.runner import RunnerConfig

    with pytest.raises(ConfigError, match="runner.seed .*pass it in overrides"):
        RunnerConfig.from_defaults(rate_hz=20.0, duration_s=1.0)


def test_trainer_refuses_an_incomplete_config():
    from robopolicy.training.config import check_trainer_config

    with pytest.raises(ConfigError, match=r"Trainer setting\(s\) \[.*'batch_size'.*\] missing"):
        check_trainer_config({"steps": 3})


def test_trainer_refuses_a_value_of_the_wrong_type():
    from robopolicy.training.config import check_trainer_config, trainer_config

    with pytest.raises(ConfigError, match="Trainer setting optim.lr has a value of the wrong type"):
        check_trainer_config(trainer_config({"optim": {"lr": "fast"}}))


def test_trainer_config_keeps_the_yaml_values_it_is_not_given():
    from robopolicy.training.config import trainer_config

    cfg = trainer_config({"steps": 7, "optim": {"lr": 0.5}})
    yaml = _raw(CONF / "trainer" / "default.yaml")
    assert (cfg.steps, cfg.optim.lr, cfg.optim.warmup_steps, cfg.ema.power) == (7, 0.5, yaml["optim"]["warmup_steps"], yaml["ema"]["power"])


def test_group_config_resolves_against_the_context():
    from robopolicy.defaults import group_config

    cfg = group_config("policy", "consistency", {"num_scales": 5}, context={"task": {"obs_horizon": 3, "action_horizon": 16, "exec_horizon": 4}})
    beso = _raw(CONF / "policy" / "beso.yaml")
    assert (cfg.obs_horizon, cfg.num_scales, cfg.sigma_max, cfg.sampler.name) == (3, 5, beso["sigma_max"], "consistency")


def test_group_config_names_a_missing_file():
    from robopolicy.defaults import group_config

    with pytest.raises(ConfigError, match="no config policy/besoo.yaml"):
        group_config("policy", "besoo")


CHECKPOINTED_GROUPS = ("policy", "net", "critic", "task", "encoder")


@pytest.mark.parametrize("path", [p for p in YAMLS if _rel(p).split("/")[0] in CHECKPOINTED_GROUPS], ids=_rel)
def test_every_class_a_checkpoint_can_name_is_allowlisted(path):
    """A run's config.yaml carries these groups; a class missing from the allowlist makes its runs unloadable."""
    from robopolicy.utils.safe_instantiate import CHECKPOINT_TARGETS, iter_targets

    for key, target in iter_targets(_raw(path)):
        assert target in CHECKPOINT_TARGETS, f"{_rel(path)}: {key} = {target} is not in CHECKPOINT_TARGETS"


def test_trainer_schema_has_no_defaults_of_its_own():
    from robopolicy.training import config

    schemas = [config.TrainerConfig, config.OptimConfig, config.EMAConfig, config.PeriodicEvalConfig, config.WandbConfig]
    assert [code_defaults(s) for s in schemas] == [{}] * len(schemas)
