"""Train an offline critic on an episode store with the one Trainer (``robopolicy-train-critic``)."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from robopolicy.data.normalize import fit_normalizer
from robopolicy.data.step_arrays import StepArrays
from robopolicy.data.store import EpisodeStore
from robopolicy.data.windows import split_episodes
from robopolicy.errors import ConfigError, DataError
from robopolicy.value.build import build_critic, critic_keys, lowdim_norm_keys
from robopolicy.value.dataset import TransitionDataset


def transition_dataset(cfg: DictConfig, store: EpisodeStore | StepArrays, episodes: list[int]) -> TransitionDataset:
    obs_keys, goal_keys = critic_keys(cfg, store.spec)
    chunk = 1 if cfg.critic.action_mode == "first" else int(cfg.critic.chunk_len)
    return TransitionDataset(store, obs_keys, int(cfg.critic.obs_horizon), chunk, int(cfg.n_step), int(cfg.reward.horizon),
                             str(cfg.reward.scheme), float(cfg.gamma), episodes, goal_keys or None)


def train_critic(cfg: DictConfig) -> dict:
    """Fit the normalizer, build the critic from ``cfg.critic``, train it; returns the trainer summary."""
    from robopolicy.training.trainer import Trainer

    if cfg.get("dataset") in (None, "", "???") or cfg.get("run_dir") in (None, "", "???"):
        raise ConfigError("robopolicy-train-critic needs dataset=PATH.zarr and run_dir=DIR.")
    path = Path(str(cfg.dataset))
    if not path.exists():
        raise DataError(f"Dataset {str(path)!r} does not exist; make one with robopolicy-collect out={path}.")
    store = EpisodeStore.open(path)
    if cfg.get("task") is not None:  # the critic is built from the store's spec; the task names what it is for
        from robopolicy.envs import make_task
        from robopolicy.training.data_checks import check_store_task

        check_store_task(store, make_task(cfg.task).spec, str(path), bool(cfg.allow_task_mismatch), "robopolicy-train-critic")
    train_idx, val_idx = (idx.tolist() for idx in split_episodes(store.n_episodes, float(cfg.val_fraction), int(cfg.seed)))
    obs_keys, goal_keys = critic_keys(cfg, store.spec)
    needed = [k for k in [*obs_keys, *goal_keys, "action", "success"] if k in store.keys]  # a missing key: TransitionDataset says so
    steps = StepArrays(store, needed, read="memory")  # the store read once: both datasets and the normalizer fit share it
    train_set = transition_dataset(cfg, steps, train_idx)
    if train_set.n_success_episodes == 0:
        raise DataError(f"No training episode of {str(path)!r} succeeds, so every sparse reward is zero; "
                        "collect some successful episodes (lower noise or fail_fraction).")
    val_set = transition_dataset(cfg, steps, val_idx) if val_idx else None
    normalizer = fit_normalizer(steps, lowdim_norm_keys(cfg, store.spec), mode=str(cfg.norm.obs), action_mode=str(cfg.norm.action),
                                episodes=train_idx)
    torch.manual_seed(int(cfg.seed))  # network initialisation: critics (and V-GPS figures) reproduce from their seed
    critic = build_critic(cfg, store.spec, normalizer)
    val_loader = None
    if val_set is not None:

        val_loader = torch.utils.data.DataLoader(val_set, batch_size=int(cfg.batch_size), shuffle=False)
    trainer = Trainer(critic, train_set, cfg, cfg.run_dir, val_loader=val_loader,
                      checkpoint_extra={"config": OmegaConf.to_container(cfg, resolve=True), "spec": store.spec,
                                        "kind": "critic", "dataset": str(path),
                                        "dataset_path": str(path.resolve()), "env": store.spec.name,
                                        "n_train_transitions": len(train_set), "n_success_episodes": train_set.n_success_episodes})
    return trainer.fit()
