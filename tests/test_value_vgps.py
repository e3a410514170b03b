"""ValueGuidedPolicy: selection rules, one batched sample/score call, spec checks."""

import pytest
import torch

from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import CheckpointError, ConfigError
from robopolicy.value.vgps import ValueGuidedPolicy, select_chunks

from _value_toys import SPEC, StubCritic, StubPolicy


def candidates(scores):
    """Chunks (K, T=3, A=2) whose known score (first action, first coordinate) is ``scores``."""
    c = torch.zeros(len(scores), 3, 2)
    c[:, 0, 0] = torch.tensor(scores)
    c[:, 1:, 1] = torch.arange(len(scores)).float().unsqueeze(-1)  # tag to identify the chunk
    return c


def obs(b=3):
    return {"state": torch.randn(b, 2, 2)}


def test_argmax_picks_the_best_known_score_with_one_batched_call_each():
    policy, critic = StubPolicy(candidates([0.1, 0.9, -0.5, 0.3])), StubCritic()
    vg = ValueGuidedPolicy(policy, critic, k=4, beta=0.0)
    out = vg.sample(obs(3), n=1)
    assert out.shape == (3, 1, 3, 2)
    assert torch.all(out[:, 0, 0, 0] == 0.9) and torch.all(out[:, 0, 1, 1] == 1)
    assert policy.calls == [4] and critic.calls == 1  # K samples from ONE sample call, ONE score call
    ValueGuidedPolicy(policy, critic, k=1).sample(obs(3))
    assert policy.calls == [4, 1] and critic.calls == 1  # K=1: nothing to rank, no critic call


def test_n_outputs_each_choose_among_their_own_k():
    policy, critic = StubPolicy(candidates([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])), StubCritic()
    out = ValueGuidedPolicy(policy, critic, k=3).sample(obs(2), n=2)
    assert policy.calls == [6]
    assert out[0, :, 0, 0].tolist() == [2.0, 5.0]  # groups {0,1,2} and {3,4,5}


def test_softmax_with_small_beta_approaches_argmax_and_large_beta_spreads():
    scores = torch.tensor([[[0.0, 1.0, 0.5, 0.2]]]).expand(1, 2000, 4)
    g = torch.Generator().manual_seed(0)
    picks = select_chunks(scores, beta=1e-3, generator=g)
    assert torch.all(picks == 1)
    picks = select_chunks(scores, beta=1.0, generator=g)
    freq = torch.bincount(picks.flatten(), minlength=4).float() / picks.numel()
    expected = torch.softmax(torch.tensor([0.0, 1.0, 0.5, 0.2]), 0)
    assert torch.allclose(freq, expected, atol=0.04)


def test_random_control_is_uniform_and_seeded():
    scores = torch.tensor([[[0.0, 10.0, 0.0, 0.0]]]).expand(1, 4000, 4)
    a = select_chunks(scores, random=True, generator=torch.Generator().manual_seed(1))
    b = select_chunks(scores, random=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    freq = torch.bincount(a.flatten(), minlength=4).float() / a.numel()
    assert torch.all((freq - 0.25).abs() < 0.03)


def test_softmax_draws_are_reproducible_from_the_seed():
    mk = lambda: ValueGuidedPolicy(StubPolicy(candidates([0.1, 0.2, 0.3])), StubCritic(), k=3, beta=0.5, seed=7)  # noqa: E731
    o = obs(16)
    assert torch.equal(mk().sample(o), mk().sample(o))


def test_critic_with_another_spec_is_refused():
    policy = StubPolicy(candidates([0.0, 1.0]))
    other_action = EnvSpec(obs=SPEC.obs, action_dim=3, action_low=(-1,) * 3, action_high=(1,) * 3, max_episode_steps=8)
    with pytest.raises(CheckpointError, match="3-dimensional actions"):
        ValueGuidedPolicy(policy, StubCritic(spec=other_action), k=2)
    other_obs = EnvSpec(obs={"state": ObsKeySpec((5,))}, action_dim=2, action_low=(-1, -1), action_high=(1, 1), max_episode_steps=8)
    with pytest.raises(CheckpointError, match="shape"):
        ValueGuidedPolicy(policy, StubCritic(spec=other_obs), k=2)
    other_task = EnvSpec(obs=SPEC.obs, action_dim=2, action_low=(-1, -1), action_high=(1, 1), max_episode_steps=8, name="push-v3")
    with pytest.raises(CheckpointError, match="trained on task 'push-v3'"):
        ValueGuidedPolicy(policy, StubCritic(spec=other_task), k=2)
    with pytest.raises(CheckpointError, match="observation steps"):
        ValueGuidedPolicy(policy, StubCritic(obs_horizon=5), k=2)
    with pytest.raises(CheckpointError, match="chunks of 9"):
        ValueGuidedPolicy(policy, StubCritic(chunk_len=9), k=2)
    with pytest.raises(ConfigError):
        ValueGuidedPolicy(policy, StubCritic(), k=0)


def test_behaves_as_a_policy_in_the_receding_horizon_controller():
    from robopolicy.policies.base import RecedingHorizonController

    policy, critic = StubPolicy(candidates([0.2, 0.7])), StubCritic()
    ctrl = RecedingHorizonController(ValueGuidedPolicy(policy, critic, k=2))
    ctrl.reset()
    acts = [ctrl.act({"state": torch.zeros(2, 2).numpy()}) for _ in range(4)]
    assert acts[0][0, 0] == pytest.approx(0.7) and len(policy.calls) == 2  # re-plans every exec_horizon=2 steps


def test_a_value_guided_policy_samples_chunks_but_is_not_a_trainable_policy():
    from robopolicy.policies.base import ChunkSampler, Policy

    vg = ValueGuidedPolicy(StubPolicy(candidates([0.1, 0.9])), StubCritic(), k=2)
    assert isinstance(vg, ChunkSampler)
    assert not isinstance(vg, Policy)  # no compute_loss to call by mistake


def test_an_exec_horizon_longer_than_the_chunk_is_one_config_error():
    from robopolicy.policies.base import ChunkSampler

    class Sampler(ChunkSampler):
        def sample(self, obs, n=1, goal=None):
            raise AssertionError("not called")

    with pytest.raises(ConfigError, match="exec_horizon=20"):
        Sampler(SPEC, ["state"], obs_horizon=2, action_horizon=16, exec_horizon=20)
