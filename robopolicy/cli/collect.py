"""``robopolicy-collect``: scripted-expert demonstrations into a zarr episode store.

    robopolicy-collect task=metaworld task.env_name=push-v3 episodes=50 noise=0.0 out=data/push.zarr

Configuration: ``conf/collect.yaml``; the task comes from the ``task`` group (``tasks/``).
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig, OmegaConf

from robopolicy.cli._hydra import CONF_DIR, hydra_command


def check_group_choices(argv: list[str], groups: tuple[str, ...] = ("task",)) -> str | None:
    """The error sentence for a ``group=name`` override naming no file in ``conf/<group>/``, else None.

    Hydra reports an unknown config-group choice itself, over several lines with exit status 1;
    this check runs first so the user gets one sentence and exit status 2 like every other error.
    """
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in groups or not value or "," in value:
            continue
        folder = CONF_DIR / key
        if not (folder / f"{value}.yaml").is_file():
            names = sorted(p.stem for p in folder.glob("*.yaml"))
            return f"Unknown {key} {value!r}; pick one of {', '.join(names)} ({key}=<name>)."
    return None


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
        walk_std=cfg.fail_walk_std,
        fail_prefix=cfg.fail_prefix,
        provenance={"config": OmegaConf.to_container(cfg, resolve=True)},
    )
    print(format_summary(summary))
    return summary


def main() -> None:
    problem = check_group_choices(sys.argv[1:])
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    _main()


if __name__ == "__main__":
    main()
