"""Where the package's configs, task definitions and assets are, installed or in a source checkout.

An installed wheel carries them inside the package (the build maps the source tree's top-level
folders into it, see setup.py)::

    robopolicy/conf/         <- conf/      (Hydra configs, one per command, and the groups)
    robopolicy/conf/task/    <- tasks/     (the ``task`` group)
    robopolicy/assets/       <- assets/    (MJCF scenes)

A source checkout (plain, ``PYTHONPATH`` or ``pip install -e``) keeps them beside the package, in
the repository's ``conf/`` (whose ``task`` entry links to ``tasks/``), ``tasks/`` and ``assets/``.

A user's own config folder (``robot/myarm.yaml``, ``task/mytask.yaml``, ...) is added with the
environment variable ``ROBOPOLICY_CONFIG_DIR`` (several folders separated by ``os.pathsep``) or
the command-line flag ``--config-dir PATH``; see :func:`user_config_dirs`.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from robopolicy.errors import ConfigError

CONFIG_DIR_ENV = "ROBOPOLICY_CONFIG_DIR"


def data_root() -> Path:
    """The folder that holds ``conf/`` and ``assets/``: the package itself when installed, else the checkout."""
    package = Path(str(resources.files("robopolicy")))
    if (package / "conf").is_dir():  # installed wheel: data copied into the package at build time
        return package
    checkout = package.parent
    if (checkout / "conf").is_dir():  # source checkout or editable install
        return checkout
    raise ConfigError(f"The robopolicy configs are missing from {package} and {checkout}; reinstall the package with `pip install .`.")


def conf_dir() -> Path:
    """The package's Hydra config folder (``conf/``, with the ``task`` group inside)."""
    return data_root() / "conf"


def task_dir() -> Path:
    """The ``task`` group: ``conf/task`` (in a checkout a link to the top-level ``tasks/``)."""
    return conf_dir() / "task"


def assets_dir() -> Path:
    """The MJCF scenes (``assets/``)."""
    return data_root() / "assets"


def asset_path(name: str) -> Path:
    """``assets/<name>``, e.g. ``asset_path("planar_push.xml")``."""
    return assets_dir() / name


def data_path(path: str | os.PathLike) -> Path:
    """A config's file reference: absolute paths as given, relative ones (``assets/x.xml``) under :func:`data_root`."""
    p = Path(path)
    return p if p.is_absolute() else data_root() / p


def user_config_dirs(cli_dirs: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """The user's config folders: ``--config-dir`` values first, then ``$ROBOPOLICY_CONFIG_DIR`` entries.

    Each must be an existing folder; its ``<group>/<name>.yaml`` files are used as ``group=name``.
    """
    env = [p for p in os.environ.get(CONFIG_DIR_ENV, "").split(os.pathsep) if p]
    dirs = []
    for raw, origin in [(d, "--config-dir") for d in cli_dirs] + [(d, CONFIG_DIR_ENV) for d in env]:
        folder = Path(raw).expanduser().resolve()
        if not folder.is_dir():
            raise ConfigError(f"The config folder {raw!r} given by {origin} does not exist; point it at a folder holding e.g. robot/<name>.yaml.")
        if folder not in dirs:
            dirs.append(folder)
    return dirs
