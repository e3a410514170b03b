"""``robopolicy-eval``: evaluate a trained run in simulation and write ``eval.json``.

    robopolicy-eval run_dir=runs/push_beso episodes=100 [checkpoint=best] [policy.sampler.steps=3]
                    [task.env_name=reach-v3] [steer=vgps steer.critic=runs/push_q steer.k=10]
                    [num_envs=4 vector=async] [video_episodes=3] [out=PATH] [seed=0]

The task and the sampler come from the checkpoint's saved config; ``task.*`` and
``policy.sampler.*`` given on the command line are merged over them (see conf/eval.yaml).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from robopolicy.cli._hydra import hydra_command
from robopolicy.errors import CheckpointError, ConfigError

# Keys under these sections are not declared in conf/eval.yaml (they come from the checkpoint), so
# Hydra would demand a "++" prefix; ``main`` adds it for the user (also inside sweeps).
_FREE_SECTIONS = re.compile(r"^(task|policy)\.[^=]+=")


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def _hydra_overrides() -> tuple[list[str], Path | None, bool]:
    """(the job's command-line overrides, its output folder, whether this is a multirun job)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return [], None, False
    hc = HydraConfig.get()
    return list(hc.overrides.task), Path(hc.runtime.output_dir), hc.mode == RunMode.MULTIRUN


def _task_chosen() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and HydraConfig.get().runtime.choices.get("task") not in (None, "null")


def _steer(cfg: DictConfig, policy):
    """Wrap ``policy`` as configured by the ``steer`` group (none: unchanged)."""
    steer = cfg.get("steer")
    if not steer or "_target_" not in steer:
        return policy, None
    missing = sorted(OmegaConf.missing_keys(steer))
    if missing:
        raise ConfigError(f"steer needs {', '.join(m if m.startswith('steer.') else 'steer.' + m for m in missing)}; add it to the command (e.g. steer.critic=RUN_DIR).")
    from hydra.utils import instantiate

    return instantiate(steer, policy=policy, _convert_="all"), _plain(steer)


def _goal(cfg: DictConfig, policy) -> dict | None:
    """``goal=`` (a .npz or {key: [numbers]}, read as robopolicy-deploy reads it), checked against the policy's goal keys."""
    from robopolicy.runtime.client import read_goal

    goal = read_goal(_plain(cfg.get("goal")))
    if goal is None:
        return None
    keys = list(getattr(getattr(policy, "policy", policy), "goal_keys", None) or [])
    if not keys:
        raise ConfigError("goal= was given but the policy is not goal-conditioned; drop goal= or train with goal.keys=[...].")
    missing = [k for k in keys if k not in goal]
    if missing:
        raise ConfigError(f"goal= lacks key(s) {missing}; the policy is conditioned on goal keys {keys}.")
    return {k: goal[k] for k in keys}


def evaluate_run(cfg: DictConfig) -> dict[str, Any]:
    """Everything ``robopolicy-eval`` does, callable from Python with a composed config."""
    from robopolicy.api import load_run
    from robopolicy.envs import make_task
    from robopolicy.evaluation import evaluate_policy
    from robopolicy.utils import atomic_write_json

    if OmegaConf.is_missing(cfg, "run_dir") or not cfg.run_dir:
        raise ConfigError("No run given; add run_dir=<the folder robopolicy-train wrote>.")
    run_dir = Path(str(cfg.run_dir))
    if not run_dir.is_dir():
        raise CheckpointError(f"Run directory {str(run_dir)!r} does not exist; pass run_dir= the folder robopolicy-train wrote.")
    # task=<name> on the command line replaces the saved task; task.<key>=... is merged over it (in load_run).
    chosen = _task_chosen()
    overrides: dict[str, Any] = {}
    sampler_over = (_plain(cfg.policy.get("sampler")) or {}) if cfg.get("policy") else {}
    if sampler_over:
        overrides["policy"] = {"sampler": sampler_over}
    if not chosen and cfg.get("task"):
        overrides["task"] = _plain(cfg.task)
    run = load_run(run_dir, checkpoint=str(cfg.checkpoint), overrides=overrides or None, device=str(cfg.device))
    folder, saved, policy = run.path, run.cfg, run.policy
    if not chosen and run.task_cfg is None:
        raise CheckpointError(f"Checkpoint {str(folder)!r} has no task in its config.yaml; pass the task with task=<name>.")
    task_cfg = cfg.task if chosen else run.task_cfg

    task = make_task(task_cfg)
    policy.spec.check_compatible(task.spec, keys=list(policy.obs_keys), what=f"checkpoint {folder.name}")
    goal = _goal(cfg, policy)
    policy, steer_info = _steer(cfg, policy)

    overrides_list, job_dir, multirun = _hydra_overrides()
    if cfg.out:
        out = Path(str(cfg.out))
    elif multirun and job_dir is not None:
        out = job_dir / "eval.json"
    else:
        out = run_dir / "eval.json"
    video_dir = Path(str(cfg.video_dir)) if cfg.video_dir else out.parent / "videos"
    task_eval = task_cfg.get("eval") or {}
    episodes = int(cfg.episodes or task_eval.get("episodes", 50))
    num_envs = int(cfg.num_envs or task_eval.get("num_envs", 1))

    result = evaluate_policy(policy, task, episodes, seed=int(cfg.seed), num_envs=num_envs, vector=str(cfg.vector),
                             video_dir=video_dir if int(cfg.video_episodes) > 0 else None,
                             video_episodes=int(cfg.video_episodes), goal=goal, progress=bool(cfg.progress),
                             max_episode_steps=cfg.max_episode_steps)
    meta = run.meta
    base = getattr(policy, "policy", policy)  # the policy inside a ValueGuidedPolicy
    result.update({
        "run_dir": str(run_dir),
        "checkpoint": {"path": str(folder), "name": folder.name, "step": meta.get("step")},
        "sampler": dict(base.sampler_cfg or _plain(saved.get("policy", {}).get("sampler")) or {}),
        "policy": saved.get("policy", {}).get("_target_"),
        "task": {k: v for k, v in _plain(task_cfg).items() if k in ("name", "env_name", "max_episode_steps", "fresh_positions")},
        "steer": steer_info,
        "goal": None if goal is None else {k: v.tolist() for k, v in goal.items()},
        "seed": int(cfg.seed),
        "device": str(cfg.device),
        "overrides": overrides_list,
        "command": " ".join(["robopolicy-eval", *overrides_list]),
    })
    atomic_write_json(out, result)
    _wandb_summary(cfg, result, out)
    ci = result["ci95"]
    print(f"success {result['success_rate']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] over {episodes} episodes "
          f"(latency p50 {result['latency_ms']['p50']:.1f} ms) -> {out}")
    return result


def _wandb_summary(cfg: DictConfig, result: dict, out: Path) -> None:
    mode = str(cfg.wandb.mode)
    if mode == "disabled":
        return
    import wandb

    scalars = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    scalars.update({"ci95_lo": result["ci95"][0], "ci95_hi": result["ci95"][1],
                    **{f"latency_ms/{k}": v for k, v in result["latency_ms"].items() if v is not None}})
    run = wandb.init(mode=mode, project=cfg.wandb.project, entity=cfg.wandb.entity, name=cfg.wandb.name,
                     dir=str(out.parent), job_type="eval", config={"overrides": result["overrides"], "task": result["task"],
                                                                 "sampler": result["sampler"], "checkpoint": result["checkpoint"]})
    run.summary.update(scalars)
    run.finish()


@hydra_command("eval")
def _main(cfg: DictConfig) -> None:
    evaluate_run(cfg)


def add_plus(overrides: list[str]) -> list[str]:
    """``task.x=1`` -> ``++task.x=1`` (also ``policy.*``): keys the checkpoint, not conf/eval.yaml, defines."""
    return [f"++{a}" if _FREE_SECTIONS.match(a) else a for a in overrides]


def main() -> None:
    sys.argv = [sys.argv[0]] + add_plus(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
