"""Transfer evaluation with a trained policy as the controller (transfer.policy_run_dir), not only the scripted expert."""

import numpy as np
from hydra import compose, initialize_config_dir

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.defaults import constructor_kwargs, group_config


class ConstantMapper:
    """A 'mapper' that always answers the same semantics: transfer must measure its error, not hide it."""

    n_frames = 1

    def __init__(self, value):
        self.value = np.asarray(value, np.float32)

    def predict(self, images, reading=None):
        return np.repeat(self.value[None], len(images), axis=0), None


def test_trained_policy_runs_on_true_and_mapped_semantics(tmp_path):
    from robopolicy.cli.train import train
    from robopolicy.collect import collect
    from robopolicy.envs import make_task
    from robopolicy.semantics.transfer import PolicyController, evaluate_transfer

    store = tmp_path / "demos.zarr"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[
            "task=planar_push", "task.max_episode_steps=16", f"dataset={store}", f"run_dir={tmp_path / 'run'}", "policy=beso",
            "net=unet", "net.down_dims=[8,16]", "net.kernel_size=3", "net.n_groups=4", "net.t_embed_dim=16",
            "batch_size=8", "steps=4", "val_fraction=0.0", "val_every=0", "ckpt_every=4", "log_every=2", "progress=false",
            "device=cpu", "wandb.mode=disabled", "optim.warmup_steps=1", "eval.every=0", "final_eval.episodes=0"])
    collect(cfg.task, 3, out=store, progress=False)
    train(cfg)

    task = make_task(cfg.task)
    real = constructor_kwargs(group_config("semantics/real_env", "same_dynamics", {"image_size": 32}))  # the real camera, no dynamics gap
    ctrl = PolicyController(str(tmp_path / "run"), device="cpu")
    a = evaluate_transfer(None, ctrl, task, real, episodes=2, seed=7)
    b = evaluate_transfer(None, ctrl, task, real, episodes=2, seed=7)
    assert a["episodes"] == 2
    assert a["success_rate"] == sum(a["successes"]) / 2
    assert (a["successes"], a["mean_length"]) == (b["successes"], b["mean_length"])  # seeded: repeatable

    wrong = ConstantMapper([0.3, 0.3, -0.3, -0.3])  # far from any true pusher / puck position
    m = evaluate_transfer(wrong, ctrl, task, real, episodes=1, seed=7)
    assert m["semantics_error_m"] > 0.05 and m["pusher_error_m"] > 0 and m["puck_error_m"] > 0
    assert np.isfinite(m["action_error"]) and m["action_error"] > 0
