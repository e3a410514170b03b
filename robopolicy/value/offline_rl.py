"""The two offline learning rules for :class:`~robopolicy.value.critic.Critic`: IQL and Cal-QL.

Each is a small config object (its constructor arguments are its Hydra config) with one method,
``compute_loss(critic, batch)``; the math lives in :mod:`robopolicy.value.losses`.

Batch (from :class:`~robopolicy.value.dataset.TransitionDataset`, collated): ``obs`` {key: (B, To, ...)},
``action`` (B, C, A), ``reward`` (B,), ``discount`` (B,) = gamma**n, ``done`` (B,), ``next_obs``,
``next_action`` (B, C, A), ``mc_return`` (B,), optional ``goal``. Raw environment units.

Cal-QL here is *actor-free*: V-GPS only needs Q to rank the base policy's proposals, so instead of
training a Gaussian actor we (a) back up with the dataset's next action (a SARSA backup: Q of the
behaviour policy, which the Monte-Carlo bound calibrates exactly), and (b) draw the CQL
out-of-distribution actions from two proposals: uniform random actions over the normalised action
box, and Gaussian perturbations of the data action (the "policy" actions whose Q-values the
Monte-Carlo return lower-bounds). Both have constant densities, so CQL's importance weights drop out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

from robopolicy.errors import ConfigError
from robopolicy.value import losses


def _as(x: Any, device: torch.device) -> Tensor:
    return torch.as_tensor(x).to(device).float()


@dataclass
class IQL:
    """Implicit Q-learning without the actor: V by expectile regression on min target Q, Q by TD on V(s')."""

    expectile: float
    polyak: float
    needs_value: bool = True

    def __post_init__(self):
        if not 0.0 < self.expectile < 1.0:
            raise ConfigError(f"IQL expectile must be in (0, 1), got {self.expectile}; V-GPS uses 0.7.")

    def compute_loss(self, critic, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        dev = critic.device
        feat = critic.encode(batch["obs"], batch.get("goal"))
        act = critic.prep_actions(batch["action"]).unsqueeze(1)  # (B, 1, C)
        q_out = critic.q_out(feat, act)[:, :, 0]  # (E, B, out)
        with torch.no_grad():
            target_q = critic.q_value(feat, act, target=True)[:, :, 0]  # (E, B)
            next_v = critic.v_value(critic.encode(batch["next_obs"], batch.get("goal")))
            y = losses.td_target(_as(batch["reward"], dev), _as(batch["discount"], dev), _as(batch["done"], dev), next_v)
        v = critic.v_value(feat.detach())
        v_loss = losses.iql_value_loss(target_q, v, self.expectile)
        q_loss = critic.head.loss(q_out, y)
        q = critic.head.value(q_out)
        return q_loss + v_loss, {"q_loss": q_loss.item(), "v_loss": v_loss.item(), "q_mean": q.mean().item(),
                                 "v_mean": v.mean().item(), "target_mean": y.mean().item()}


@dataclass
class CalQL:
    """Cal-QL (CQL with the Monte-Carlo lower bound; ``calibrated=False`` gives plain CQL), actor-free."""

    alpha: float
    polyak: float
    num_random: int
    num_proposals: int
    proposal_noise: float
    temperature: float
    calibrated: bool
    needs_value: bool = False

    def __post_init__(self):
        if self.alpha < 0 or self.num_random + self.num_proposals < 1:
            raise ConfigError("Cal-QL needs alpha >= 0 and at least one random or proposal action; fix critic.algo.")

    def compute_loss(self, critic, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        dev = critic.device
        feat = critic.encode(batch["obs"], batch.get("goal"))
        act = critic.prep_actions(batch["action"]).unsqueeze(1)  # (B, 1, C) in [-1, 1] units
        q_out = critic.q_out(feat, act)  # (E, B, 1, out)
        q_data = critic.head.value(q_out)[:, :, 0]  # (E, B)
        with torch.no_grad():
            next_feat = critic.encode(batch["next_obs"], batch.get("goal"))
            next_act = critic.prep_actions(batch["next_action"]).unsqueeze(1)
            next_q = critic.q_value(next_feat, next_act, target=True)[:, :, 0].min(dim=0).values
            y = losses.td_target(_as(batch["reward"], dev), _as(batch["discount"], dev), _as(batch["done"], dev), next_q)
        td_loss = critic.head.loss(q_out[:, :, 0], y)

        b, c = act.shape[0], act.shape[-1]
        rand = torch.rand(b, self.num_random, c, device=dev) * 2.0 - 1.0
        prop = (act + self.proposal_noise * torch.randn(b, self.num_proposals, c, device=dev)).clamp(-1.0, 1.0)
        q_ood = critic.q_value(feat, torch.cat([rand, prop], dim=1))  # (E, B, Nr + Np)
        mc = _as(batch["mc_return"], dev) if self.calibrated else None
        reg = losses.cql_regularizer(q_data, q_ood[..., : self.num_random], q_ood[..., self.num_random:], self.alpha,
                                     mc, self.temperature)
        metrics = {"td_loss": td_loss.item(), "cql_reg": reg.item(), "q_data": q_data.mean().item(),
                   "q_ood": q_ood.mean().item(), "target_mean": y.mean().item()}
        return td_loss + reg, metrics
