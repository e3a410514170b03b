"""``robopolicy-semantics``: train image-to-semantics mappers, run active learning, evaluate transfer.

    robopolicy-semantics mode=active run_dir=runs/sem budget=50
    robopolicy-semantics mode=train run_dir=runs/sem_map train.strategy=diversity budget=30
    robopolicy-semantics mode=transfer mapper_dir=runs/sem_map/diversity/round_00 run_dir=runs/sem_map

See conf/semantics.yaml and robopolicy/semantics/experiment.py.
"""

from __future__ import annotations

import json

from omegaconf import DictConfig

from robopolicy.cli._hydra import hydra_command


@hydra_command("semantics")
def main(cfg: DictConfig) -> None:
    from robopolicy.semantics.experiment import main_modes

    out = main_modes(cfg)
    if cfg.mode == "transfer":
        print(json.dumps({k: {x: v[x] for x in ("success_rate", "ci95", "episodes")} for k, v in out.items()}, indent=1))
    else:
        print(f"wrote {cfg.run_dir}/results.json and {cfg.run_dir}/curves.png")


if __name__ == "__main__":
    main()
