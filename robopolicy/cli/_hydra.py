"""Shared plumbing for the Hydra commands.

* Configs come with the package (:mod:`robopolicy.resources`): ``conf/`` with the ``task`` group.
  A user's own folder of configs (``robot/myarm.yaml``, ``task/mytask.yaml``) is added with
  ``ROBOPOLICY_CONFIG_DIR=/path`` (``os.pathsep``-separated for several) or ``--config-dir /path``
  and used as ``robot=myarm``.
* Every user error ends in ONE line, ``error: <sentence>``, and exit status 2: a
  :class:`~robopolicy.errors.RobopolicyError` raised by a command, and, checked before Hydra starts
  the command, an override Hydra cannot parse, an unknown config-group choice, an unknown key
  (with the closest known key), a sweep without ``--multirun``, any other composition error, and a
  value of the wrong type or out of range (the command's table in :mod:`robopolicy.cli._schema`).
* Keys under a command's open sections (``task.*``, ``policy.*`` for eval, deploy and the policy
  server, whose values come from the checkpoint) are accepted without Hydra's ``++``.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    GrammarParseError,
    InterpolationResolutionError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from robopolicy import resources
from robopolicy.cli import _schema
from robopolicy.errors import ConfigError, RobopolicyError

# Kept for the tools and tests that compose configs with Hydra's compose API.
CONF_DIR = resources.conf_dir()
REPO_ROOT = resources.data_root()

# Hydra flags that print something instead of running the command: passed through unchecked.
_INFO_FLAGS = ("-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion")
# Hydra flags followed by a value (``--info`` only optionally, one of _INFO_CHOICES).
_VALUE_FLAGS = ("-cd", "--config-dir", "-cp", "--config-path", "-cn", "--config-name", "--experimental-rerun", "-c", "--cfg",
                "-p", "--package", "-sc", "--shell-completion")
_INFO_CHOICES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _one_line(text: str) -> str:
    """The first line of a library's message, without its final full stop."""
    return (str(text).strip().splitlines() or [""])[0].strip().rstrip(".")


def report_errors(fn: Callable) -> Callable:
    """Turn RobopolicyError, a missing mandatory value and a bad interpolation or value into one line and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RobopolicyError as e:
            _fail(str(e))
        except MissingMandatoryValue as e:
            key = getattr(e, "full_key", None)
            _fail(f"{key} is required; add {key}=<value> to the command." if key else f"{_one_line(e)}; add the missing value to the command.")
        except (InterpolationResolutionError, ValidationError, GrammarParseError) as e:
            # A value the user wrote (``${...}`` that does not resolve, a type OmegaConf refuses).
            # Other OmegaConf errors (a key the code asks for that no config has) are bugs: traceback.
            key = getattr(e, "full_key", None)
            where = f" (at {key})" if key else ""
            _fail(f"{_one_line(e)}{where}; check that key's value on the command line or in its config file.")

    return wrapper


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse for the non-Hydra commands: a usage error is one ``error:`` line and exit 2, like the rest."""

    def error(self, message: str):
        _fail(f"{message}; run {self.prog} --help for the arguments.")


def config_groups(extra_dirs: Sequence[Path] = ()) -> dict[str, list[Path]]:
    """Config group -> the folders that hold it: the package's ``conf/`` first, then ``extra_dirs``.

    A group is a folder holding yaml files; Hydra's own (``hydra/...``) are left out.
    """
    groups: dict[str, list[Path]] = {}
    for root in [resources.conf_dir(), *extra_dirs]:
        for folder in sorted(root.rglob("*")):
            if folder.is_dir() and any(folder.glob("*.yaml")):
                rel = folder.relative_to(root).as_posix()
                if not rel.startswith("hydra"):
                    groups.setdefault(rel, []).append(folder)
    return groups


def check_group_choices(argv: list[str], groups: dict[str, list[Path]] | None = None) -> str | None:
    """The error sentence for a ``group=name`` override naming no ``<group>/name.yaml`` in any config folder, else None.

    Hydra reports an unknown config-group choice itself, over several lines with exit status 1;
    this check runs first so the user gets one sentence and exit status 2 like every other error.
    """
    groups = config_groups() if groups is None else groups
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~").partition("@")[0]  # group@package=name: the group's folder
        if not sep or key not in groups or not value or value.startswith(("choice(", "range(", "glob(", "[", "'", '"')):
            continue
        missing = [v for v in value.split(",") if v != "null" and not any((folder / f"{v}.yaml").is_file() for folder in groups[key])]
        if not missing:  # a,b: a sweep over choices, each checked
            continue
        value = missing[0]
        names = sorted({p.stem for folder in groups[key] for p in folder.glob("*.yaml")})
        close = difflib.get_close_matches(value, names, n=1)
        hint = f"use {key}={close[0]} (one of {', '.join(names)})" if close else f"pick one of {', '.join(names)} ({key}=<name>)"
        return (f"Unknown {key} {value!r}; {hint}, or add {key}/{value}.yaml to a folder given by "
                f"{resources.CONFIG_DIR_ENV} or --config-dir.")
    return None


def split_argv(argv: list[str]) -> tuple[list[str], list[str], bool, bool]:
    """(Hydra flags, overrides, multirun, info-only) of a command line; ``--config-dir`` values stay in the flags."""
    flags, overrides, multirun, info = [], [], False, False
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in ("-m", "--multirun"):
            multirun = True
            flags.append(arg)
        elif name in _VALUE_FLAGS or (name in ("-i", "--info") and i + 1 < len(argv) and argv[i + 1] in _INFO_CHOICES):
            info = info or name in _INFO_FLAGS
            flags.append(arg)
            if "=" not in arg and i + 1 < len(argv):
                i += 1
                flags.append(argv[i])
        elif arg.startswith("-"):
            info = info or name in _INFO_FLAGS
            flags.append(arg)
        else:
            overrides.append(arg)
        i += 1
    return flags, overrides, multirun, info


def flag_values(flags: list[str], names: tuple[str, ...]) -> list[str]:
    out = []
    for i, arg in enumerate(flags):
        name, sep, value = arg.partition("=")
        if name in names:
            out.append(value if sep else (flags[i + 1] if i + 1 < len(flags) else ""))
    return out


def _parse(overrides: list[str]):
    """Hydra's own parse of each override; an unparsable one is named in one sentence."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    parsed = []
    for arg in overrides:
        try:
            parsed.append(parser.parse_override(arg))
        except HydraException as e:  # the grammar's errors (OverrideParseException and its base)
            raise ConfigError(f"Cannot read the override {arg!r} ({_one_line(e)}); write it as key=value, quoting values with "
                              "special characters (key='a,b').") from None
    return parsed


def open_overrides(overrides: list[str], parsed, open_sections: tuple[str, ...]) -> list[str]:
    """``task.x=1`` -> ``++task.x=1`` for keys under an open section (their values come from the checkpoint)."""
    out = []
    for arg, o in zip(overrides, parsed):
        plain = not (o.is_add() or o.is_force_add() or o.is_delete()) and o.package is None
        if plain and any(o.key_or_group.startswith(s + ".") for s in open_sections):
            arg = "++" + arg
        out.append(arg)
    return out


def _dotted_keys(cfg: DictConfig) -> list[str]:
    def walk(node, prefix):
        for k, v in node.items():
            key = f"{prefix}{k}"
            yield key
            if isinstance(v, dict):
                yield from walk(v, key + ".")

    return list(walk(OmegaConf.to_container(cfg, resolve=False), ""))


def unknown_key_message(key: str, known: list[str]) -> str:
    """ "Unknown key 'stpes'; did you mean 'steps'?": a known key with the same last part, else the closest one."""
    leaf = key.rpartition(".")[2]
    same_leaf = sorted((k for k in known if k.rpartition(".")[2] == leaf), key=lambda k: (k.count("."), k))
    close = same_leaf[:1] or difflib.get_close_matches(key, known, n=1)
    if not close:
        by_leaf = {k.rpartition(".")[2]: k for k in sorted(known, key=lambda k: -k.count("."))}
        leaf_close = difflib.get_close_matches(leaf, list(by_leaf), n=1)
        close = [by_leaf[leaf_close[0]]] if leaf_close else []
    if close:
        return f"Unknown key {key!r}; did you mean {close[0]!r}?"
    return f"Unknown key {key!r}; check its spelling against the command's config, or write +{key}=... to add a new key."


class _Composer:
    """Compose one command's config with Hydra's public compose API (the same search path as the run)."""

    def __init__(self, config_name: str, user_dirs: list[Path]):
        self.config_name = config_name
        self.searchpath = [f"hydra.searchpath=[{','.join('file://' + str(d) for d in user_dirs)}]"] if user_dirs else []

    def __call__(self, overrides: list[str]) -> DictConfig:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(resources.conf_dir()), version_base="1.3"):
            return compose(self.config_name, overrides=overrides + self.searchpath)


def check_command_line(config_name: str, argv: list[str]) -> list[str]:
    """Check a command line before Hydra runs it; return it with open-section keys prefixed ``++``
    and the ``$ROBOPOLICY_CONFIG_DIR`` folders on Hydra's search path. Raises ConfigError.
    """
    from hydra.errors import ConfigCompositionException, HydraException

    flags, overrides, multirun, info = split_argv(argv)
    env_dirs = resources.user_config_dirs()
    cli_dirs = resources.user_config_dirs(flag_values(flags, ("-cd", "--config-dir")))
    cli_dirs = [d for d in cli_dirs if d not in env_dirs]
    extra = [f"hydra.searchpath=[{','.join('file://' + str(d) for d in env_dirs)}]"] if env_dirs else []
    if info or flag_values(flags, ("-cp", "--config-path", "-cn", "--config-name")):
        return flags + overrides + extra  # printing help or a config, or another config: Hydra's own handling

    user_dirs = cli_dirs + env_dirs
    groups = config_groups(user_dirs)
    problem = check_group_choices(overrides, groups)
    if problem is not None:
        raise ConfigError(problem)
    schema = _schema.schema_for(config_name)
    parsed = _parse(overrides)
    overrides = open_overrides(overrides, parsed, schema.open_sections)
    sweeps = [arg for arg, o in zip(overrides, parsed) if o.is_sweep_override()]
    if sweeps and not multirun:
        key = sweeps[0].lstrip("+~").partition("=")[0]
        raise ConfigError(f"{sweeps[0]!r} gives several values; add --multirun to sweep over them, or write a list as {key}=[a,b].")
    for o in parsed:  # a sweep's values, before Hydra makes the sweep folder (each job checks its whole config again)
        rule = schema.rules.get(o.key_or_group)
        if rule is not None and o.is_sweep_override() and not o.is_interval_sweep():
            for value in o.sweep_iterator():
                _schema.check(OmegaConf.create({"v": value}), _schema.Schema({"v": rule}), rename=o.key_or_group)
    # One job's command line: each sweep at its first value (the keys and the choices are checked).
    single = [_first_of_sweep(arg, o) if o.is_sweep_override() else arg for arg, o in zip(overrides, parsed)]
    single = [arg for arg in single if arg is not None]
    compose = _Composer(config_name, user_dirs)
    try:
        cfg = compose(single)
    except ConfigCompositionException as e:
        raise ConfigError(_composition_message(e, single, groups, compose)) from None
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(f"{_one_line(e)}; check the overrides against conf/{config_name}.yaml.") from None
    try:
        _schema.check(cfg, schema)
    except ConfigError:  # again, with the defaults (composed only now: it costs a compose) as the example fix
        _schema.check(cfg, schema, examples=_base(compose, single, groups))
        raise
    except OmegaConfBaseException as e:  # an interpolation that cannot be resolved
        raise ConfigError(f"{_one_line(e)}; check the overrides against conf/{config_name}.yaml.") from None
    return flags + overrides + extra


def _first_of_sweep(arg: str, o) -> str | None:
    """``a=1,2`` -> ``a=1`` (prefix kept); None for an interval sweep, which has no first value."""
    if o.is_interval_sweep():
        return None
    first = next(iter(o.sweep_string_iterator()), None)
    if first is None:
        return None
    return f"{arg.partition('=')[0]}={first}"  # the key as written, with its + / ++ prefix and @package


def _base(compose: _Composer, overrides: list[str], groups: dict) -> DictConfig | None:
    """The config with only the group choices of ``overrides`` (its values are the defaults)."""
    choices = [a for a in overrides if a.lstrip("+~").partition("=")[0].partition("@")[0] in groups or a.startswith("hydra")]
    try:
        return compose(choices)
    except Exception:  # noqa: BLE001  (only used to show defaults in messages)
        return None


def _composition_message(e: Exception, overrides: list[str], groups: dict, compose: _Composer) -> str:
    """One sentence for Hydra's multi-line composition error: the unknown key with a hint, else its first line."""
    base = _base(compose, overrides, groups)
    if base is not None:
        known = _dotted_keys(base)
        for arg, o in zip(overrides, _parse(overrides)):
            key = o.key_or_group
            if o.is_add() and key in known:
                return f"The key {key!r} already exists; write {arg.lstrip('+')} without the +."
            if o.is_add() or o.is_force_add() or key.partition("@")[0] in groups or key.startswith("hydra.") or key in known:
                continue
            return unknown_key_message(key, known)
    return f"{_one_line(e)}; check the overrides against the command's config."


def hydra_command(config_name: str) -> Callable[[Callable[[DictConfig], object]], Callable[[], object]]:
    """Decorator: make ``fn(cfg)`` a Hydra main reading ``conf/<config_name>.yaml``, every user error one line."""

    def decorate(fn: Callable[[DictConfig], object]) -> Callable[[], object]:
        schema = _schema.schema_for(config_name)

        @report_errors
        @functools.wraps(fn)  # Hydra names the job and its --help after the command's module
        def task(cfg: DictConfig):
            _schema.check(cfg, schema)  # again per job: a multirun sweep's values are checked here
            return fn(cfg)

        hydra_main = hydra.main(config_path=str(resources.conf_dir()), config_name=config_name, version_base="1.3")(task)

        @functools.wraps(fn)
        def wrapped():
            try:
                argv = check_command_line(config_name, sys.argv[1:])
            except RobopolicyError as e:
                _fail(str(e))
            sys.argv = [sys.argv[0], *argv]
            return hydra_main()

        return wrapped

    return decorate
