"""Reward labelling and the critics' pure loss functions against closed forms."""

import math

import numpy as np
import pytest
import torch

from robopolicy.errors import ConfigError
from robopolicy.value import losses
from robopolicy.value.rewards import label_episode, label_sparse_rewards, mc_returns


# -- rewards ----------------------------------------------------------------------------------------
def test_binary_rewards_on_the_last_h_steps_of_a_successful_episode():
    success = np.array([0, 0, 0, 0, 1, 1, 1], bool)
    r, term = label_sparse_rewards(success, horizon=3, scheme="binary")
    np.testing.assert_array_equal(r, [0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(term, [0, 0, 0, 0, 0, 0, 1])
    # success first reached early: still the *last* H steps are the rewarded ones
    r, _ = label_sparse_rewards(np.array([0, 1, 1, 1, 1, 1], bool), horizon=2)
    np.testing.assert_array_equal(r, [0, 0, 0, 0, 1, 1])


def test_failing_episode_has_no_reward_and_no_terminal():
    r, term = label_sparse_rewards(np.zeros(5, bool), horizon=3, scheme="binary")
    np.testing.assert_array_equal(r, np.zeros(5))
    assert not term.any()


def test_failing_episode_under_the_negative_scheme_pays_minus_one_and_never_terminates():
    r, term = label_sparse_rewards(np.zeros(5, bool), horizon=3, scheme="negative")
    np.testing.assert_array_equal(r, -np.ones(5))
    assert not term.any()


def test_negative_scheme_and_short_episode():
    r, term = label_sparse_rewards(np.array([0, 1], bool), horizon=3, scheme="negative")
    np.testing.assert_array_equal(r, [0, 0])  # shorter than H: every step rewarded
    assert term.tolist() == [False, True]
    with pytest.raises(ConfigError):
        label_sparse_rewards(np.zeros(3, bool), scheme="dense")


def test_mc_returns_closed_form():
    g = 0.98
    lab = label_episode(np.array([0, 0, 0, 1, 1, 1], bool), horizon=3, scheme="binary", gamma=g)
    tail = 1 + g + g**2
    expected = [g**3 * tail, g**2 * tail, g * tail, tail, 1 + g, 1]
    np.testing.assert_allclose(lab["mc_return"], expected, rtol=1e-6)
    # a failing -1/0 episode pays -1 forever: -1 / (1 - gamma) at every step (Cal-QL's convention)
    lab = label_episode(np.zeros(4, bool), scheme="negative", gamma=g)
    np.testing.assert_allclose(lab["mc_return"], -1 / (1 - g) * np.ones(4), rtol=1e-5)
    # terminal in the middle cuts the bootstrap
    np.testing.assert_allclose(mc_returns([1, 1, 1], [False, True, False], g, tail=10.0), [1 + g, 1, 1 + g * 10], rtol=1e-6)


# -- IQL ----------------------------------------------------------------------------------------------
def test_expectile_half_is_half_mse_and_asymmetric_weights():
    diff = torch.tensor([-2.0, -1.0, 0.5, 3.0])
    assert torch.isclose(losses.expectile_loss(diff, 0.5), 0.5 * (diff**2).mean())
    tau = 0.7
    expected = (0.3 * 4 + 0.3 * 1 + 0.7 * 0.25 + 0.7 * 9) / 4
    assert math.isclose(losses.expectile_loss(diff, tau).item(), expected, rel_tol=1e-6)


def test_expectile_minimiser_is_the_expectile():
    # the minimiser of the expectile loss over a constant v is the tau-expectile of the samples
    x = torch.tensor([0.0, 0.0, 0.0, 1.0])
    v = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([v], lr=0.5)
    for _ in range(500):
        opt.zero_grad()
        losses.expectile_loss(x - v, 0.9).backward()
        opt.step()
    # closed form: 0.9 (1 - v) = 3 * 0.1 * v  ->  v = 0.9 / 1.2 = 0.75
    assert abs(v.item() - 0.75) < 1e-4


def test_td_target_and_iql_value_loss_use_min_of_ensemble():
    y = losses.td_target(torch.tensor([1.0, 0.0]), torch.tensor([0.98, 0.98]), torch.tensor([1.0, 0.0]), torch.tensor([5.0, 2.0]))
    torch.testing.assert_close(y, torch.tensor([1.0, 1.96]))
    target_q = torch.tensor([[1.0, 4.0], [2.0, 3.0]])  # (E=2, B=2): min -> [1, 3]
    v = torch.tensor([1.0, 1.0])
    assert math.isclose(losses.iql_value_loss(target_q, v, 0.5).item(), 0.5 * (0 + 4) / 2, rel_tol=1e-6)


# -- CQL / Cal-QL -----------------------------------------------------------------------------------
def test_calql_lifts_policy_q_below_the_mc_return():
    q_data = torch.tensor([[1.0]])                 # (E=1, B=1)
    q_rand = torch.tensor([[[-10.0]]])             # (E, B, Nr=1)
    q_pi = torch.tensor([[[-3.0, 0.5]]])           # (E, B, Np=2): both below the MC return 2.0
    mc = torch.tensor([2.0])
    plain = losses.cql_regularizer(q_data, q_rand, q_pi, alpha=1.0)
    cal = losses.cql_regularizer(q_data, q_rand, q_pi, alpha=1.0, mc_return=mc)
    lse = lambda *v: math.log(sum(math.exp(x) for x in v))  # noqa: E731
    # the data action (Q = 1.0) is part of the logsumexp
    assert math.isclose(plain.item(), lse(-10, -3, 0.5, 1.0) - 1.0, rel_tol=1e-5)
    assert math.isclose(cal.item(), lse(-10, 2.0, 2.0, 1.0) - 1.0, rel_tol=1e-5)  # random ones are not lifted
    # a lifted Q-value gets no gradient from the regulariser: it is not pushed further down
    q_pi_g = q_pi.clone().requires_grad_(True)
    losses.cql_regularizer(q_data, q_rand, q_pi_g, 1.0, mc_return=mc).backward()
    assert torch.all(q_pi_g.grad == 0)
    # above the bound nothing changes
    high = torch.tensor([[[3.0, 4.0]]])
    assert torch.isclose(losses.cql_regularizer(q_data, q_rand, high, 2.0, mc), losses.cql_regularizer(q_data, q_rand, high, 2.0))


def test_cql_push_on_data_q_fades_once_it_dominates():
    """Cal-QL must not push Q(data) up forever: the regulariser is >= 0 and its gradient on q_data
    goes to 0 as q_data rises above the (lifted) sampled actions."""
    q_rand = torch.tensor([[[-1.0, 0.0]]])
    q_pi = torch.tensor([[[0.0]]])
    mc = torch.tensor([0.5])
    grads = []
    for level in (0.0, 2.0, 8.0):
        q_data = torch.tensor([[level]], requires_grad=True)
        reg = losses.cql_regularizer(q_data, q_rand, q_pi, 1.0, mc_return=mc)
        assert reg.item() >= 0.0
        reg.backward()
        grads.append(-q_data.grad.item())  # the upward push on q_data
    assert grads[0] > grads[1] > grads[2] and grads[2] < 1e-2


# -- HL-Gauss ---------------------------------------------------------------------------------------
def test_hl_gauss_target_sums_to_one_and_recovers_the_scalar():
    v_min, v_max, n = -1.0, 3.0, 41
    edges = losses.hl_gauss_edges(v_min, v_max, n).double()
    w = (v_max - v_min) / n
    sigma = 0.75 * w
    y = torch.linspace(v_min + 4 * sigma, v_max - 4 * sigma, 97).double()
    p = losses.hl_gauss_target(y, edges, sigma)
    assert p.shape == (97, n) and torch.all(p >= 0)
    torch.testing.assert_close(p.sum(-1), torch.ones(97, dtype=torch.float64))
    centers = 0.5 * (edges[1:] + edges[:-1])
    mean = (p * centers).sum(-1)
    # Binning a Gaussian of sigma = 0.75 w and reading it at bin centres is exact up to a periodic
    # term of relative size exp(-2 pi^2 sigma^2 / w^2) ~ 1.5e-5 (Poisson summation), so away from the
    # edges (4 sigma) the expectation matches y far inside 1e-3 bin widths.
    assert (mean - y).abs().max().item() < 1e-3 * w
    # at an edge only half the Gaussian is inside: its mean is pulled inward by about
    # sigma * sqrt(2 / pi) = 0.6 w (plus the half-bin of the last centre), so within one bin width
    pe = losses.hl_gauss_target(torch.tensor([v_max]).double(), edges, sigma)
    assert 0 < v_max - (pe * centers).sum().item() < w


def test_hl_gauss_loss_is_cross_entropy_and_minimised_by_the_target():
    edges = losses.hl_gauss_edges(0.0, 1.0, 10)
    y = torch.tensor([0.33, 0.71])
    target = losses.hl_gauss_target(y, edges, 0.075)
    logits = torch.zeros(2, 10, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(400):
        opt.zero_grad()
        losses.hl_gauss_loss(logits, y, edges, 0.075).backward()
        opt.step()
    torch.testing.assert_close(torch.softmax(logits, -1), target, atol=2e-3, rtol=0)
    torch.testing.assert_close(losses.hl_gauss_expectation(logits, edges), y, atol=5e-3, rtol=0)
