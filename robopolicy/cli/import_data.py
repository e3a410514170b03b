"""``robopolicy-import SRC out=STORE``: a LeRobot / Diffusion Policy zarr / robomimic dataset -> an episode store.

    robopolicy-import datasets/my_lerobot_v3 out=data/mine.zarr
    robopolicy-import datasets/pusht.zarr out=data/pusht.zarr format=dp_zarr fps=10
    robopolicy-import SRC out=STORE 'rename={observation.images.top:top}' drop=[observation.images.wrist]

Configuration: ``conf/import.yaml``. The first bare argument (no ``=``) is taken as ``src=``.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig, OmegaConf

from robopolicy.cli._hydra import hydra_command
from robopolicy.errors import ConfigError


def bare_argument_as(key: str, argv: list[str]) -> list[str]:
    """``argv`` with its first argument that is no Hydra override (no ``=``, no ``-`` flag) rewritten to ``key=<arg>``."""
    out, done = [], False
    for a in argv:
        if not done and "=" not in a and not a.startswith("-"):
            out.append(f"{key}={a}")
            done = True
        else:
            out.append(a)
    return out


def required(cfg: DictConfig, key: str, example: str) -> str:
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
        raise ConfigError(f"{key} is required; add {example} to the command.")
    return str(cfg[key])


@hydra_command("import")
def _main(cfg: DictConfig) -> dict:
    from robopolicy.data.formats.importer import format_summary, import_dataset

    src = required(cfg, "src", "the dataset folder or file as the first argument")
    out = required(cfg, "out", "out=data/<name>.zarr")
    options = OmegaConf.to_container(cfg, resolve=True)
    s = import_dataset(src, out, str(cfg.format), options, overwrite=bool(cfg.overwrite), progress=bool(cfg.progress))
    print(format_summary(s))
    return s


def main() -> None:
    sys.argv = [sys.argv[0], *bare_argument_as("src", sys.argv[1:])]
    _main()


if __name__ == "__main__":
    main()
