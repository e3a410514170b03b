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


def hydra_command(config_name: str) -> Callable[[Callable[[DictConfig], object]], Callable[[], object]]:
    """Decorator: make ``fn(cfg)`` a Hydra main reading ``conf/<config_name>.yaml``."""

    def decorate(fn: Callable[[DictConfig], object]) -> Callable[[], object]:
        wrapped = hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(report_errors(fn))
        return wrapped

    return decorate
