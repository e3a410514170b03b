"""``robopolicy-train``: fit a policy on an episode store with the one Trainer.

    robopolicy-train task=metaworld task.env_name=push-v3 policy=beso dataset=data/push.zarr steps=20000 run_dir=runs/push_beso

Configuration: ``conf/train.yaml`` (+ ``conf/trainer/default.yaml``). Under ``torchrun`` it trains
with DDP. Rerunning with the same ``run_dir`` resumes from the latest checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from robopolicy.cli._hydra import hydra_command
from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import ConfigError, DataError


def require(cfg: DictConfig, key: str, example: str) -> str:
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
        raise ConfigError(f"{key} is required; add {key}={example} to the command.")
    return str(cfg[key])


def check_dataset_spec(data_spec: EnvSpec, task_spec: EnvSpec, keys: list[str], dataset: str) -> None:
    """The store must hold the policy's observation keys with the task's shapes and its action size."""
    if data_spec.action_dim != task_spec.action_dim:
        raise DataError(f"The dataset {dataset} has {data_spec.action_dim}-dimensional actions but the task has "
                        f"{task_spec.action_dim}; collect data for this task or pick the task the data came from.")
    for k in keys:
        if k not in data_spec.obs:
            raise DataError(f"The dataset {dataset} has no observation {k!r} (it has {sorted(data_spec.obs)}); collect it with "
                            "the same task settings (e.g. task.image.enabled) or set policy.obs_keys.")
        if tuple(data_spec.obs[k].shape) != tuple(task_spec.obs[k].shape):
            raise DataError(f"Observation {k!r} has shape {tuple(data_spec.obs[k].shape)} in {dataset} but "
                            f"{tuple(task_spec.obs[k].shape)} in the task; use the task settings the data was collected with.")


def train(cfg: DictConfig) -> dict:
    """Open the store, check it against the task, fit the normalizer, build the policy, train, evaluate."""
    import torch

    from robopolicy.api import normalizer_keys
    from robopolicy.data import EpisodeStore, WindowDataset, fit_normalizer, split_episodes
    from robopolicy.data.step_arrays import StepArrays
    from robopolicy.envs.dataset_task import can_roll_out, resolve_task
    from robopolicy.policies.build import build_policy
    from robopolicy.training import Trainer
    from robopolicy.training.data_checks import check_store_task
    from robopolicy.training.distributed import cleanup_distributed

    run_dir = require(cfg, "run_dir", "runs/<name>")
    dataset = require(cfg, "dataset", "data/<task>.zarr")
    if not Path(dataset).exists():
        raise DataError(f"The dataset {dataset} does not exist; make one with robopolicy-collect out={dataset}.")
    OmegaConf.resolve(cfg)
    from robopolicy.policies.consistency import attach_teacher, distillation_config  # policy.teacher: distillation

    cfg = distillation_config(cfg)
    store = EpisodeStore.open(dataset)
    task = resolve_task(cfg, dataset, store)  # task=dataset (or an imported store): the spec comes from the store
    spec = task.spec
    obs_keys = list(cfg.policy.get("obs_keys") or spec.obs)
    goal_keys = list(cfg.goal["keys"] or [])
    check_dataset_spec(store.spec, spec, list(dict.fromkeys(obs_keys + goal_keys)), dataset)
    check_store_task(store, spec, dataset, bool(cfg.allow_task_mismatch))

    train_idx, val_idx = split_episodes(store.n_episodes, float(cfg.val_fraction), int(cfg.seed))
    norm_keys = normalizer_keys(cfg, spec)
    steps = StepArrays(store, [*obs_keys, *goal_keys, *norm_keys, "action"])  # the store read once: datasets and fit share it
    normalizer = fit_normalizer(steps, norm_keys, mode=cfg.norm.obs, action_mode=cfg.norm.action, episodes=train_idx)
    torch.manual_seed(int(cfg.seed))  # network initialisation
    policy = build_policy(cfg, spec, normalizer)
    attach_teacher(policy, cfg)
    window = dict(obs_keys=obs_keys, obs_horizon=policy.obs_horizon, action_horizon=policy.action_horizon,
                  goal_keys=goal_keys or None, goal_horizon=tuple(cfg.goal.horizon), seed=int(cfg.seed))
    train_set = WindowDataset(steps, episodes=train_idx, **window)
    val_loader = None
    if len(val_idx):
        val_loader = torch.utils.data.DataLoader(WindowDataset(steps, episodes=val_idx, **window), batch_size=int(cfg.batch_size))

    def rollouts(section: DictConfig, name: str):
        def run(model, step):
            from robopolicy.evaluation import evaluate_policy  # lazy: pulls in the simulators

            n_video = int(section.get("video_episodes") or 0)
            video_dir = Path(run_dir) / "videos" / f"{name}_step{step:06d}" if n_video > 0 else None
            return evaluate_policy(model, task, int(section.episodes), seed=int(section.seed), num_envs=int(section.num_envs),
                                   progress=False, video_dir=video_dir, video_episodes=n_video)

        return run

    rollouts_ok = (int(cfg.eval.every) > 0 or int(cfg.final_eval.episodes) > 0) and can_roll_out(task)
    trainer = Trainer(
        policy, train_set, cfg, run_dir, val_loader=val_loader,
        evaluate_fn=rollouts(cfg.eval, "eval") if rollouts_ok and int(cfg.eval.every) > 0 else None,
        final_evaluate_fn=rollouts(cfg.final_eval, "final") if rollouts_ok and int(cfg.final_eval.episodes) > 0 else None,
        checkpoint_extra={"config": cfg, "spec": spec, "dataset": dataset, "dataset_path": str(Path(dataset).resolve()),
                          "task": task.name, "env": spec.name,
                          "episodes": {"train": len(train_idx), "val": len(val_idx)}},
    )
    try:
        summary = trainer.fit()
    finally:
        cleanup_distributed()  # no-op outside torchrun
    if trainer.dist.is_main:
        print(format_summary(summary, run_dir))
    return summary


def format_summary(s: dict, run_dir: str) -> str:
    rows = [("run_dir", run_dir), ("steps", f"{s['step']}/{s['steps']}"), ("train time", f"{s['train_time_s']:.1f} s")]
    for key, label in (("train/loss", "train loss"), ("val/loss", "val loss")):
        if key in s:
            rows.append((label, f"{s[key]:.4f}"))
    if "eval/success_rate_max" in s:
        rows.append(("eval success (periodic)", f"max {s['eval/success_rate_max']:.3f}, last-10 mean "
                     f"{s['eval/success_rate_last10_mean']:.3f} over {s['eval/n_evals']} evals"))
    if s.get("final"):
        f = s["final"]
        ci = f.get("ci95", [float("nan")] * 2)
        rows.append(("final success", f"{f['success_rate']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] over {f.get('episodes')} episodes"))
    if s.get("best_checkpoint"):
        b = s["best_checkpoint"]
        rows.append(("best checkpoint", f"{b['name']} ({b['metric']} {b['value']:.4f})"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@hydra_command("train")
def _main(cfg: DictConfig) -> dict:
    return train(cfg)


def main() -> None:
    _main()  # hydra_command checks group choices (task=, policy=, net=) before Hydra starts


if __name__ == "__main__":
    main()
