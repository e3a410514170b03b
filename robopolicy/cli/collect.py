"""``robopolicy-collect``: scripted-expert demonstrations into a zarr episode store.

    robopolicy-collect task=metaworld task.env_name=push-v3 episodes=50 noise=0.0 out=data/push.zarr

Configuration: ``conf/collect.yaml``; the task comes from the ``task`` group (``tasks/``).
"""

from __future__ import annotations


from omegaconf import DictConfig, OmegaConf

from robopolicy.cli._hydra import hydra_command


@hydra_command("collect")
def _main(cfg: DictConfig) -> dict:
    from robopolicy.collect import collect, format_summary

    summary = collect(
        cfg.task,
        episodes=cfg.episodes,
        noise=cfg.noise,
        fail_fraction=cfg.fail_fraction,
        out=cfg.out,
        seed=cfg.seed,
        stop_after_success=cfg.stop_after_success,
        progress=cfg.progress,
        render=cfg.render,
        overwrite=cfg.overwrite,
        append=cfg.append,
        walk_std=cfg.fail_walk_std,
        fail_prefix=cfg.fail_prefix,
        provenance={"config": OmegaConf.to_container(cfg, resolve=True)},
    )
    print(format_summary(summary))
    return summary


def main() -> None:
    _main()  # hydra_command checks group choices (task=...) before Hydra starts


if __name__ == "__main__":
    main()
