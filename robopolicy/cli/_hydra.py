"""Shared plumbing for the Hydra commands.

* Configs live in the repository's top-level ``conf/`` folder (``conf/task`` points at ``tasks/``).
* A :class:`~robopolicy.errors.RobopolicyError` raised by a command is printed as one sentence on
  stderr and the process exits with status 2: no traceback wall for user mistakes.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable

import hydra
from omegaconf import DictConfig

from robopolicy.errors import RobopolicyError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"


def report_errors(fn: Callable) -> Callable:
    """Turn RobopolicyError into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RobopolicyError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def config_groups() -> tuple[str, ...]:
    """The config groups under conf/ (folders holding yaml files), Hydra's own excluded."""
    groups = []
    for folder in sorted(CONF_DIR.rglob("*")):
        if folder.is_dir() and any(folder.glob("*.yaml")):
            rel = folder.relative_to(CONF_DIR).as_posix()
            if not rel.startswith("hydra"):
                groups.append(rel)
    return tuple(groups)


def check_group_choices(argv: list[str], groups: tuple[str, ...] | None = None) -> str | None:
    """The error sentence for a ``group=name`` override naming no file in ``conf/<group>/``, else None.

    Hydra reports an unknown config-group choice itself, over several lines with exit status 1;
    this check runs first so the user gets one sentence and exit status 2 like every other error.
    """
    groups = config_groups() if groups is None else groups
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in groups or not value or "," in value or value.startswith(("choice(", "range(", "glob(")):
            continue
        folder = CONF_DIR / key
        if not (folder / f"{value}.yaml").is_file():
            names = sorted(p.stem for p in folder.glob("*.yaml"))
            return f"Unknown {key} {value!r}; pick one of {', '.join(names)} ({key}=<name>)."
    return None


def hydra_command(config_name: str) -> Callable[[Callable[[DictConfig], object]], Callable[[], object]]:
    """Decorator: make ``fn(cfg)`` a Hydra main reading ``conf/<config_name>.yaml``."""

    def decorate(fn: Callable[[DictConfig], object]) -> Callable[[], object]:
        hydra_main = hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(report_errors(fn))

        @functools.wraps(fn)
        def wrapped():
            problem = check_group_choices(sys.argv[1:])
            if problem is not None:
                print(f"error: {problem}", file=sys.stderr)
                sys.exit(2)
            return hydra_main()

        return wrapped

    return decorate
