"""Critic, transitions and training: shapes, target updates, learning on a tiny synthetic dataset,
and the trained checkpoint loaded back for V-GPS."""

import numpy as np
import pytest
import torch

from robopolicy.defaults import constructor_kwargs, group_config
from robopolicy.errors import ConfigError, DataError
from robopolicy.value.critic import Critic
from robopolicy.value.dataset import TransitionDataset
from robopolicy.value.offline_rl import CalQL

from _value_toys import SPEC, StubPolicy, make_store, unit_normalizer

VGPS = {k: v for k, v in constructor_kwargs(group_config("steer", "vgps")).items() if k != "critic"}  # conf/steer/vgps.yaml


def _algo(name: str, **over):
    """The ``algo`` of conf/critic/<name>.yaml with ``over`` changed."""
    from hydra.utils import instantiate

    return instantiate(group_config("critic", name, {"algo": over}, context={"task": {"obs_horizon": 2}}).algo)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("value") / "toy.zarr")


def test_transitions_labels_and_edges(store):
    ds = TransitionDataset(store, ["state"], obs_horizon=2, chunk_len=3, n_step=2, reward_horizon=3, gamma=0.9)
    assert len(ds) == store.n_steps and ds.n_success_episodes == 20
    it = ds[0]  # first step of a successful episode
    assert it["obs"]["state"].shape == (2, 2) and it["action"].shape == (3, 2)
    np.testing.assert_array_equal(it["obs"]["state"][0], it["obs"]["state"][1])  # start padded
    assert it["reward"] == 0 and it["discount"] == pytest.approx(0.81) and it["done"] == 0
    np.testing.assert_array_equal(it["next_obs"]["state"][1], store.get("state", slice(2, 3))[0])
    assert it["mc_return"] == pytest.approx(0.9**5 * (1 + 0.9 + 0.81), rel=1e-5)
    last = ds[7]  # terminal step: one step taken, done
    assert last["reward"] == 1 and last["done"] == 1 and last["discount"] == pytest.approx(0.9)
    np.testing.assert_array_equal(last["action"][1:], np.repeat(last["action"][:1], 2, 0))  # end padded
    six = ds[6]  # n-step sum stops at the terminal
    assert six["reward"] == pytest.approx(1 + 0.9) and six["done"] == 1
    assert ds[8]["mc_return"] == 0 and ds[15]["done"] == 0  # failing episode: no reward, truncated
    with pytest.raises(DataError, match="lacks keys"):
        TransitionDataset(store, ["image"])


def _critic(algo, **kw):
    torch.manual_seed(0)
    cfg = group_config("critic", "iql", {"obs_horizon": 2, "hidden_dims": [64, 64], **kw}, context={"task": {"obs_horizon": 2}})
    return Critic(SPEC, unit_normalizer(), **(constructor_kwargs(cfg) | {"algo": algo}))


def test_score_shape_min_of_ensemble_and_chunk_mode():
    c = _critic(_algo("iql"), action_mode="chunk", chunk_len=4)
    obs = {"state": torch.randn(3, 2, 2)}
    acts = torch.rand(3, 5, 6, 2) * 2 - 1
    s = c.score(obs, acts)
    assert s.shape == (3, 5)
    feat = c.encode(obs)
    per = c.q_value(feat, c.prep_actions(acts))
    torch.testing.assert_close(s, per.min(0).values)
    acts2 = acts.clone()
    acts2[:, :, 4:] = 0.0  # beyond chunk_len: ignored
    torch.testing.assert_close(c.score(obs, acts2), s)
    with pytest.raises(DataError, match="chunks of 2"):
        c.score(obs, acts[:, :, :2])
    with pytest.raises(ConfigError):
        _critic(_algo("iql"), action_mode="all")


def test_target_networks_move_by_polyak_once_per_optimizer_step(store):
    c = _critic(_algo("iql", polyak=0.5))
    with torch.no_grad():
        for p in c.q_nets.parameters():
            p.add_(1.0)
    before = [t.clone() for t in c.target_q_nets.parameters()]
    batch = torch.utils.data.default_collate([TransitionDataset(store, ["state"])[i] for i in range(8)])
    for mode in (c.eval, c.train):  # a loss alone (validation or training) never moves the targets
        mode()
        c.compute_loss(batch)
        assert all(torch.equal(a, b) for a, b in zip(before, c.target_q_nets.parameters()))
    c.after_step()  # the Trainer calls this once after every optimizer step
    for b, t, s in zip(before, c.target_q_nets.parameters(), c.q_nets.parameters()):
        torch.testing.assert_close(t, 0.5 * b + 0.5 * s)


@pytest.mark.parametrize("algo,head", [(_algo("iql"), {"kind": "scalar"}),
                                       (_algo("calql", alpha=1.0), {"kind": "hl_gauss", "v_min": -0.5, "v_max": 3.5, "num_bins": 21})])
def test_tiny_critic_ranks_successful_actions_above_failing_ones(store, algo, head):
    torch.manual_seed(0)
    ds = TransitionDataset(store, ["state"], gamma=0.9)
    c = _critic(algo, head=head)
    opt = torch.optim.Adam([p for p in c.parameters() if p.requires_grad], lr=1e-3)
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    for _ in range(25):
        for batch in loader:
            loss, metrics = c.compute_loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            c.after_step()
    assert np.isfinite(loss.item())
    obs = {"state": torch.rand(64, 2, 2) * 2 - 1}
    good = torch.tensor([0.8, 0.0]).expand(64, 1, 1, 2)
    bad = torch.tensor([-0.8, 0.0]).expand(64, 1, 1, 2)
    q = c.eval().score(obs, torch.cat([good, bad], 1))
    assert (q[:, 0] > q[:, 1]).float().mean() > 0.9


def test_train_critic_with_the_trainer_then_load_and_steer(store, tmp_path):
    from hydra import compose, initialize_config_dir

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.value.train import train_critic
    from robopolicy.value.vgps import ValueGuidedPolicy, load_critic, make_vgps

    run = tmp_path / "q"
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train_critic", overrides=[f"dataset={store.path}", f"run_dir={run}", "critic=calql", "steps=30",
                                                 "batch_size=32", "wandb.mode=disabled", "progress=false", "device=cpu",
                                                 "critic.hidden_dims=[32,32]", "val_fraction=0.1",
                                                 "allow_task_mismatch=true"])  # a toy store, not the default task's data
    summary = train_critic(cfg)
    assert summary["step"] == 30
    critic = load_critic(run, device="cpu")
    assert isinstance(critic.algo, CalQL) and critic.obs_horizon == 2
    obs = {"state": torch.randn(2, 2, 2)}
    acts = torch.rand(2, 3, 4, 2) * 2 - 1
    assert critic.score(obs, acts).shape == (2, 3)
    cands = torch.rand(5, 4, 2) * 2 - 1
    vg = make_vgps(StubPolicy(cands), str(run), **VGPS | {"k": 5, "device": "cpu"})
    assert isinstance(vg, ValueGuidedPolicy)
    out = vg.sample(obs)
    best = critic.score(obs, cands.unsqueeze(0).expand(2, -1, -1, -1)).argmax(-1)
    torch.testing.assert_close(out[:, 0], cands[best])
    with pytest.raises(ConfigError, match="steer.critic"):
        make_vgps(StubPolicy(cands), None, **VGPS)
    # conf/steer/vgps.yaml instantiated the way robopolicy-eval does it (policy passed in)
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    steer = OmegaConf.load(CONF_DIR / "steer" / "vgps.yaml")
    steer.critic, steer.k, steer.random = str(run), 5, True
    vg = instantiate(steer, policy=StubPolicy(cands), _convert_="all")
    assert isinstance(vg, ValueGuidedPolicy) and vg.k == 5 and vg.random


def test_critic_training_reproduces_from_its_seed(store, tmp_path):
    """Two critic runs with the same seed give the same weights (the network initialisation is seeded)."""
    from hydra import compose, initialize_config_dir
    from safetensors.torch import load_file

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.value.train import train_critic

    weights = []
    for name in ("a", "b"):
        torch.manual_seed(len(weights) + 100)  # a different global RNG state before each run
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("train_critic", overrides=[f"dataset={store.path}", f"run_dir={tmp_path / name}", "critic=iql", "steps=3",
                                                     "batch_size=16", "wandb.mode=disabled", "progress=false", "device=cpu",
                                                     "critic.hidden_dims=[16,16]", "val_fraction=0.1", "num_workers=0",
                                                     "allow_task_mismatch=true"])
        train_critic(cfg)
        ckpt = sorted((tmp_path / name / "checkpoints").glob("step_*"))[-1]
        weights.append(load_file(str(ckpt / "model.safetensors")))
    assert sorted(weights[0]) == sorted(weights[1])
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], rtol=0, atol=0)
