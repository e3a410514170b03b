"""Runs saved by one code tree, loaded by another: same outputs?

    PYTHONPATH=OLD python tools/check_old_runs.py train OUT   # collect, train a tiny image policy (small_cnn) and an IQL critic, record outputs
    PYTHONPATH=NEW python tools/check_old_runs.py load OUT    # load both runs with this code, compare the outputs

OLD and NEW are two code trees (e.g. a `git archive` of the commit before a config change, and this one).
Seconds on a CPU; writes only under OUT.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

import robopolicy
from robopolicy.api import load_run
from robopolicy.cli._hydra import CONF_DIR
from robopolicy.collect import collect
from robopolicy.data import EpisodeStore

if len(sys.argv) != 3 or sys.argv[1] not in ("train", "load"):
    sys.exit("usage: python tools/check_old_runs.py train|load OUT")
mode, out = sys.argv[1], Path(sys.argv[2])
print("code:", robopolicy.__file__)
COMMON = ["progress=false", "device=cpu", "wandb.mode=disabled", "val_fraction=0.0", "val_every=0", "log_every=2",
          "optim.warmup_steps=1"]
TASK = ["task=multimodal", "task.obs=visuomotor", "task.camera_size=32", "task.max_episode_steps=12"]


def outputs():
    pol = load_run(out / "img_run", device="cpu")
    obs = {k: EpisodeStore.open(out / "img.zarr").episode(0)[k][None, :2] for k in pol.policy.obs_keys}
    torch.manual_seed(0)
    chunks = pol.policy.sample(obs, n=2).numpy()
    crit = load_run(out / "critic_run", device="cpu")
    sobs = {k: EpisodeStore.open(out / "state.zarr").episode(0)[k][None, :2] for k in crit.model.obs_keys}
    acts = torch.linspace(-1, 1, 8).view(1, 4, 1, 2)
    scores = crit.model.score(sobs, acts).detach().numpy()
    return {"chunks": chunks, "scores": scores, "policy_encoder": dict(pol.cfg.policy.encoder),
            "critic_encoder": dict(crit.cfg.critic.encoder)}


if mode == "train":
    from robopolicy.cli.train import train
    from robopolicy.value.train import train_critic

    out.mkdir(parents=True, exist_ok=True)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=TASK + COMMON + [
            f"dataset={out / 'img.zarr'}", f"run_dir={out / 'img_run'}", "policy=beso", "net=mlp", "net.hidden_dims=[16,16]",
            "+encoder@policy.encoder=small_cnn", "policy.encoder.rgb.channels=[8,8]", "policy.encoder.rgb.strides=[2,2]",
            "policy.encoder.rgb.num_kp=4", "policy.encoder.rgb.feature_dim=8", "batch_size=4", "steps=4", "ckpt_every=4",
            "eval.every=0", "final_eval.episodes=0"])
        ccfg = compose("train_critic", overrides=["task=multimodal", *COMMON,
                                                  f"dataset={out / 'state.zarr'}", f"run_dir={out / 'critic_run'}", "critic=iql",
                                                  "steps=4", "batch_size=8", "critic.hidden_dims=[16,16]"])
    collect(cfg.task, 2, out=out / "img.zarr", progress=False, stop_after_success=1)
    train(cfg)
    collect(ccfg.task, 4, out=out / "state.zarr", progress=False)
    train_critic(ccfg)
    ref = outputs()
    np.savez(out / "ref.npz", chunks=ref["chunks"], scores=ref["scores"])
    (out / "ref.json").write_text(json.dumps({k: ref[k] for k in ("policy_encoder", "critic_encoder")}, default=str, indent=1))
    print("saved config encoder keys:", sorted(ref["policy_encoder"]), sorted(ref["critic_encoder"]))
else:
    ref = np.load(out / "ref.npz")
    got = outputs()
    print("loaded config policy.encoder:", json.dumps(got["policy_encoder"], default=str))
    print("loaded config critic.encoder keys:", sorted(got["critic_encoder"]))
    print("policy chunks identical:", bool(np.array_equal(got["chunks"], ref["chunks"])), "max |diff|", float(np.abs(got["chunks"] - ref["chunks"]).max()))
    print("critic scores identical:", bool(np.array_equal(got["scores"], ref["scores"])), "max |diff|", float(np.abs(got["scores"] - ref["scores"]).max()))
