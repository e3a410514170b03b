"""Camera observations end to end: collect with images, train BESO with the image encoder, evaluate, load.

Legacy path: ``task.image.enabled`` adds a camera under the key ``image`` beside the privileged
``state``; an image policy reads ``state`` only when allowed by name (``policy.encoder.allow_privileged``).
"""

from __future__ import annotations

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.cli.train import train
from robopolicy.collect import collect
from robopolicy.data import EpisodeStore


def test_image_policy_trains_evaluates_and_loads(tmp_path):
    import robopolicy

    store_path = tmp_path / "img.zarr"
    task_overrides = ["task=multimodal", "task.image.enabled=true", "task.image.size=64", "task.max_episode_steps=12"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=task_overrides + [
            f"dataset={store_path}", f"run_dir={tmp_path / 'run'}", "policy=beso", "net=mlp", "net.hidden_dims=[32,32]",
            "policy.obs_keys=[state,image]", "policy.encoder.allow_privileged=[state]", "policy.encoder.rgb_feature_dim=16", "policy.encoder.num_kp=8",
            "batch_size=4", "steps=4", "val_fraction=0.0", "val_every=0", "ckpt_every=2", "log_every=2",
            "progress=false", "device=cpu", "wandb.mode=disabled", "optim.warmup_steps=1",
            "eval.every=0", "final_eval.episodes=2", "final_eval.num_envs=2"])
    summary_demo = collect(cfg.task, 2, out=store_path, progress=False, stop_after_success=1)
    store = EpisodeStore.open(store_path)
    assert store.spec.obs["image"].shape == (64, 64, 3) and store.get("image").dtype == np.uint8
    assert summary_demo["episodes"] == 2

    summary = train(cfg)
    assert summary["step"] == 4
    final = summary["final"]
    assert final["episodes"] == 2
    # every training run writes its plot, and the final evaluation films its episodes into the run folder
    assert (tmp_path / "run" / "training.png").is_file()
    assert len(list((tmp_path / "run" / "videos" / "final_step000004").glob("*.mp4"))) == 2

    policy = robopolicy.load(tmp_path / "run", device="cpu")
    assert "image" in policy.obs_keys
    ep = store.episode(0)
    obs = {"state": ep["state"][None, :2], "image": ep["image"][None, :2]}
    out = policy.sample(obs, n=3)
    assert out.shape == (1, 3, policy.action_horizon - policy.obs_horizon + 1, 2) and torch.isfinite(out).all()
