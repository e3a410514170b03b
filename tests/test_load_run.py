"""``load_run``: the one loader of trained runs (policy or critic), with structured overrides."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from robopolicy.api import Run, apply_overrides, load, load_run, load_run_config
from robopolicy.errors import CheckpointError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from _eval_toys import make_untrained_run

    path = tmp_path_factory.mktemp("run") / "run"
    make_untrained_run(path, "multimodal", step=7, hidden=(8, 8))
    return path


def test_load_run_gives_policy_task_spec_and_path(run):
    r = load_run(run, device="cpu")
    assert isinstance(r, Run)
    assert r.kind == "policy"
    assert r.path == run / "checkpoints" / "step_7"
    assert r.meta["step"] == 7
    assert r.task_cfg._target_ == "robopolicy.envs.multimodal.MultimodalTask"
    assert r.spec.name == r.policy.spec.name == "multimodal"
    assert not r.policy.training
    assert r.policy.device == torch.device("cpu")


def test_structured_overrides_keep_their_types(run):
    r = load_run(run, overrides={"policy": {"sampler": {"steps": 2}}, "task": {"max_episode_steps": 11}}, device="cpu")
    assert r.policy.sampler_cfg["steps"] == 2
    assert isinstance(r.policy.sampler_cfg["steps"], int)
    assert r.task_cfg.max_episode_steps == 11
    assert r.policy.sampler_cfg["name"] == "ddim"  # keys not overridden keep the saved value


def test_dotted_keys_address_nested_settings_without_strings():
    cfg = OmegaConf.create({"policy": {"sampler": {"name": "ddim", "steps": 3}}})
    out = apply_overrides(cfg, {"policy.sampler.steps": 5, "policy.sampler.schedule": None})
    assert out.policy.sampler.steps == 5
    assert out.policy.sampler.schedule is None
    assert out.policy.sampler.name == "ddim"
    assert cfg.policy.sampler.steps == 3  # the input is not modified


def test_sampler_is_set_once(run, monkeypatch):
    from robopolicy.policies.denoising import DenoisingPolicy

    calls = []
    real = DenoisingPolicy.set_sampler
    monkeypatch.setattr(DenoisingPolicy, "set_sampler", lambda self, c: (calls.append(dict(c)), real(self, c))[1])
    load_run(run, overrides={"policy": {"sampler": {"steps": 1}}}, device="cpu")
    assert len(calls) == 1
    assert calls[0]["steps"] == 1


def test_load_is_the_policy_of_load_run(run):
    a, b = load(run, device="cpu"), load_run(run, device="cpu").policy
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_override_naming_a_foreign_target_is_refused(run):
    with pytest.raises(CheckpointError, match="'os.system' at task._target_"):
        load_run_config(run, overrides={"task": {"_target_": "os.system"}})


def test_critic_run_loads_as_a_critic_and_refuses_policy(tmp_path):
    from _value_toys import SPEC, make_store
    from hydra import compose, initialize_config_dir

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.value.critic import Critic
    from robopolicy.value.train import train_critic

    store = make_store(tmp_path / "toy.zarr", n_episodes=6)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train_critic", overrides=[f"dataset={store.path}", f"run_dir={tmp_path / 'q'}", "steps=2", "batch_size=8",
                                                 "wandb.mode=disabled", "progress=false", "device=cpu", "critic.hidden_dims=[8,8]",
                                                 "val_fraction=0.0", "allow_task_mismatch=true"])
    train_critic(cfg)
    r = load_run(tmp_path / "q", device="cpu")
    assert r.kind == "critic"
    assert isinstance(r.model, Critic)
    assert r.spec.name == SPEC.name
    with pytest.raises(CheckpointError, match="is a critic run"):
        _ = r.policy
