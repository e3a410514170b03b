"""The critics' losses as short pure functions (CleanRL style): tensors in, scalar loss out.

* IQL (Kostrikov et al., 2022): expectile regression of V toward Q, TD regression of Q toward
  ``r + gamma * V(s')``.
* CQL / Cal-QL (Kumar et al., 2020; Nakamoto et al., 2023): push Q down on out-of-distribution
  actions (a soft maximum over them) and up on the data; Cal-QL first lifts the Q-values of the
  policy's proposals to the Monte-Carlo return of the data, so the critic is never pushed below the
  value of the behaviour policy.
* HL-Gauss (Imani & White, 2018; Farebrother et al., 2024): a categorical value over fixed bins
  trained with cross-entropy to a Gaussian (sigma = 0.75 x bin width) integrated over each bin.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


# -- IQL ------------------------------------------------------------------------------------------
def expectile_loss(diff: Tensor, tau: float) -> Tensor:
    """diff = target - prediction, any shape -> scalar mean of ``|tau - 1[diff < 0]| * diff**2``.

    tau = 0.5 gives half the mean squared error; tau > 0.5 weighs under-estimates (diff > 0) more,
    so the prediction moves toward an upper expectile of the target.
    """
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return (weight * diff.pow(2)).mean()


def td_target(reward: Tensor, discount: Tensor, done: Tensor, next_value: Tensor) -> Tensor:
    """reward, discount, done, next_value: (B,) -> ``r + discount * (1 - done) * V(s')`` (B,), no grad.

    ``discount`` is gamma**n for an n-step transition.
    """
    return (reward + discount * (1.0 - done.float()) * next_value).detach()


def iql_value_loss(target_q: Tensor, v: Tensor, tau: float) -> Tensor:
    """target_q: (E, B) target-network Q of the data actions, v: (B,) -> expectile loss of V.

    The ensemble is reduced with a min (clipped double Q), as in IQL.
    """
    return expectile_loss(target_q.min(dim=0).values.detach() - v, tau)


def q_regression_loss(q: Tensor, target: Tensor) -> Tensor:
    """q: (E, B) every ensemble member, target: (B,) -> mean over members of the MSE."""
    return F.mse_loss(q, target.detach().unsqueeze(0).expand_as(q))


# -- CQL / Cal-QL ---------------------------------------------------------------------------------
def calibrate(q_pi: Tensor, mc_return: Tensor) -> Tensor:
    """q_pi: (..., B, N) proposal Q-values, mc_return: (B,) -> ``max(q_pi, mc_return)`` (..., B, N).

    Cal-QL's lower bound: Q-values of proposed actions that fall below the data's Monte-Carlo
    return are lifted to it, so the regulariser does not push them lower still.
    """
    return torch.maximum(q_pi, mc_return.unsqueeze(-1))


def cql_regularizer(q_data: Tensor, q_rand: Tensor, q_pi: Tensor, alpha: float, mc_return: Tensor | None = None,
                    temperature: float = 1.0) -> Tensor:
    """CQL(H) regulariser, calibrated (Cal-QL) when ``mc_return`` is given.

    q_data: (E, B) Q of the data actions; q_rand: (E, B, Nr) Q of uniform random actions;
    q_pi: (E, B, Np) Q of proposal ("policy") actions; mc_return: (B,) or None.
    Returns the scalar ``alpha * mean(T * logsumexp([q_rand, q_pi, q_data] / T) - q_data)``, summed
    over the ensemble members. Importance weights of the proposals are constants (uniform densities)
    and are dropped: they shift every logsumexp equally and do not change the gradient.

    The data action is part of the logsumexp, so the term is >= 0 and its push on ``q_data`` fades
    once ``q_data`` dominates the sampled actions. Without it, calibration (proposals lifted to a
    constant) leaves a constant -alpha gradient on ``q_data`` that a squared TD loss balances only
    alpha/2 above its target, and bootstrapping compounds that bias until Q diverges (measured on
    Meta-World mixed data: Q of data actions past any possible return, still rising).
    """
    if mc_return is not None:
        q_pi = calibrate(q_pi, mc_return)
    q_ood = torch.cat([q_rand, q_pi, q_data.unsqueeze(-1)], dim=-1)
    soft_max = temperature * torch.logsumexp(q_ood / temperature, dim=-1)  # (E, B)
    return alpha * (soft_max - q_data).mean(dim=-1).sum()


# -- HL-Gauss -------------------------------------------------------------------------------------
def hl_gauss_edges(v_min: float, v_max: float, num_bins: int) -> Tensor:
    """-> (num_bins + 1,) equally spaced bin edges over [v_min, v_max]."""
    return torch.linspace(v_min, v_max, num_bins + 1)


def hl_gauss_target(y: Tensor, edges: Tensor, sigma: float) -> Tensor:
    """y: (B,) scalar targets, edges: (N+1,) -> (B, N) probabilities.

    Mass of N(y, sigma^2) in each bin, via the normal CDF ``0.5 * (1 + erf((x - y) / (sigma sqrt 2)))``,
    renormalised by the mass inside [edges[0], edges[-1]] so each row sums to 1 (targets outside
    the support are clipped into it first).
    """
    y = y.clamp(edges[0], edges[-1]).unsqueeze(-1)
    cdf = 0.5 * (1.0 + torch.erf((edges.to(y) - y) / (sigma * math.sqrt(2.0))))  # (B, N+1)
    mass = cdf[..., 1:] - cdf[..., :-1]
    return mass / (cdf[..., -1:] - cdf[..., :1]).clamp_min(1e-12)


def hl_gauss_expectation(logits: Tensor, edges: Tensor) -> Tensor:
    """logits: (..., N), edges: (N+1,) -> (...) expected value over bin centres."""
    centers = 0.5 * (edges[1:] + edges[:-1]).to(logits)
    return (torch.softmax(logits, dim=-1) * centers).sum(dim=-1)


def hl_gauss_loss(logits: Tensor, y: Tensor, edges: Tensor, sigma: float) -> Tensor:
    """logits: (..., B, N), y: (B,) -> scalar cross-entropy to the HL-Gauss target (mean over all but N)."""
    target = hl_gauss_target(y.detach(), edges, sigma)
    return -(target * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
