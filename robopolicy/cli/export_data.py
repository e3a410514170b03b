"""``robopolicy-export STORE out=DIR format=lerobot|robomimic``: an episode store -> another tool's format.

    robopolicy-export data/mine.zarr out=exports/mine                       (LeRobotDataset v3.0, AV1 video)
    robopolicy-export data/mine.zarr out=exports/mine codec=h264
    robopolicy-export data/mine.zarr out=exports/mine.hdf5 format=robomimic

Configuration: ``conf/export.yaml``. The first bare argument (no ``=``) is taken as ``store=``.
"""

from __future__ import annotations

import os
import sys

from omegaconf import DictConfig, OmegaConf

from robopolicy.cli._hydra import hydra_command
from robopolicy.cli.import_data import bare_argument_as, required


@hydra_command("export")
def _main(cfg: DictConfig) -> dict:
    from robopolicy.data.formats.importer import export_dataset

    store = required(cfg, "store", "the store path as the first argument")
    out = required(cfg, "out", "out=<folder or .hdf5 file>")
    s = export_dataset(store, out, str(cfg.format), OmegaConf.to_container(cfg, resolve=True), overwrite=bool(cfg.overwrite),
                       progress=bool(cfg.progress))
    print(f"exported {s['episodes']} episodes, {s['steps']} steps -> {s['path']} ({s['format']})")
    return s


def main() -> None:
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner and notes per encoder unless told: errors only
    sys.argv = [sys.argv[0], *bare_argument_as("store", sys.argv[1:])]
    _main()


if __name__ == "__main__":
    main()
