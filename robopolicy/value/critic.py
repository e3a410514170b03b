"""Offline critic Q(s, a): an ensemble of Q networks (min for scoring), a V network for IQL,
Polyak-averaged target copies, a scalar or HL-Gauss head, optional goal conditioning.

Observations and actions come in raw environment units. Observations go through the same
:class:`~robopolicy.nets.obs_preprocessor.ObservationPreprocessor` as a policy's (normalised with
the critic's own :class:`Normalizer`, saved in its safetensors); actions are normalised here. The
learning rule is a separate object (``algo``: :class:`~robopolicy.value.offline_rl.IQL` or
:class:`~robopolicy.value.offline_rl.CalQL`) so the same network trains with either.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import ConfigError, DataError
from robopolicy.nets.obs_preprocessor import ObservationPreprocessor
from robopolicy.nets.mlp import mlp
from robopolicy.value import losses

ACTION_MODES = ("first", "chunk")


class ValueHead(nn.Module):
    """Maps network outputs to values and trains them. ``kind``: ``scalar`` (MSE) or ``hl_gauss``
    (categorical over ``num_bins`` bins on [v_min, v_max], cross-entropy, sigma = sigma_ratio x bin width)."""

    def __init__(self, *, kind: str, v_min: float, v_max: float, num_bins: int, sigma_ratio: float):
        super().__init__()
        if kind not in ("scalar", "hl_gauss"):
            raise ConfigError(f"Unknown critic head {kind!r}; use critic.head.kind=scalar or hl_gauss.")
        if kind == "hl_gauss" and not v_max > v_min:
            raise ConfigError(f"HL-Gauss support needs v_max > v_min, got [{v_min}, {v_max}]; fix critic.head.v_min/v_max.")
        self.kind = kind
        self.out_dim = 1 if kind == "scalar" else int(num_bins)
        self.register_buffer("edges", losses.hl_gauss_edges(v_min, v_max, self.out_dim), persistent=False)
        self.sigma = float(sigma_ratio) * (float(v_max) - float(v_min)) / self.out_dim

    def value(self, out: Tensor) -> Tensor:
        """out: (..., out_dim) -> (...) scalar values."""
        return out.squeeze(-1) if self.kind == "scalar" else losses.hl_gauss_expectation(out, self.edges)

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        """out: (E, B, out_dim), target: (B,) -> scalar."""
        if self.kind == "scalar":
            return losses.q_regression_loss(out.squeeze(-1), target)
        return losses.hl_gauss_loss(out, target, self.edges, self.sigma)


class Critic(nn.Module):
    """Q(s, a) ensemble over the first action (``action_mode="first"``) or the first ``chunk_len``
    actions of a chunk (``"chunk"``), with V(s) when the algorithm needs it.

    spec: the task's EnvSpec; normalizer: a fitted Normalizer with the obs keys and ``action``;
    algo: the learning rule (has ``compute_loss(critic, batch)``, ``needs_value``, ``polyak``).
    """

    def __init__(self, spec: EnvSpec, normalizer: nn.Module, algo: Any, *, obs_keys: Sequence[str] | None,
                 obs_horizon: int, action_mode: str, chunk_len: int, ensemble: int,
                 hidden_dims: Sequence[int], head: Mapping[str, Any] | None,
                 goal_keys: Sequence[str] | None, encoder: Mapping[str, Any] | None):
        super().__init__()
        if action_mode not in ACTION_MODES:
            raise ConfigError(f"Unknown critic action_mode {action_mode!r}; use 'first' or 'chunk'.")
        if ensemble < 1:
            raise ConfigError(f"critic.ensemble must be at least 1, got {ensemble}.")
        self.spec = spec
        self.algo = algo
        self.obs_keys = list(obs_keys) if obs_keys else list(spec.obs)
        self.goal_keys = list(goal_keys) if goal_keys else []
        self.obs_horizon = int(obs_horizon)
        self.action_mode = action_mode
        self.chunk_len = 1 if action_mode == "first" else int(chunk_len)
        self.normalizer = normalizer
        self.obs_encoder = ObservationPreprocessor(spec, self.obs_keys, self.obs_horizon, normalizer, encoder)
        self.goal_encoder = ObservationPreprocessor(spec, self.goal_keys, None, normalizer, encoder, "goal") if self.goal_keys else None
        feat_dim = self.obs_encoder.out_dim + (self.goal_encoder.out_dim if self.goal_encoder else 0)
        self.head = ValueHead(**dict(head or {}))
        in_dim = feat_dim + self.chunk_len * spec.action_dim
        self.q_nets = nn.ModuleList(mlp(in_dim, hidden_dims, self.head.out_dim) for _ in range(int(ensemble)))
        self.target_q_nets = copy.deepcopy(self.q_nets).requires_grad_(False)
        self.v_net = mlp(feat_dim, hidden_dims, 1) if getattr(algo, "needs_value", False) else None

    # -- preprocessing --------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, obs: Mapping[str, Any], goal: Mapping[str, Any] | None = None) -> Tensor:
        """obs: {key: (B, To', ...)} raw (the last To steps are used) -> features (B, F)."""
        feat = self.obs_encoder(obs, self.device)
        if self.goal_encoder is not None:
            if goal is None:
                raise DataError(f"This critic is goal-conditioned on {self.goal_keys}; pass a goal.")
            feat = torch.cat([feat, self.goal_encoder(goal, self.device)], dim=-1)
        return feat

    def prep_actions(self, actions: Tensor) -> Tensor:
        """actions: (..., T, A) env units -> (..., chunk_len * A) normalised (first ``chunk_len`` steps)."""
        actions = torch.as_tensor(actions).to(self.device).float()
        if actions.shape[-2] < self.chunk_len:
            raise DataError(f"The critic scores {self.chunk_len} actions per chunk but got chunks of {actions.shape[-2]}; "
                            "lower critic.chunk_len or sample longer chunks.")
        a = self.normalizer.normalize("action", actions[..., : self.chunk_len, :])
        return a.flatten(-2)

    # -- networks on features -------------------------------------------------------------------
    def q_out(self, feat: Tensor, act: Tensor, target: bool = False) -> Tensor:
        """feat: (B, F), act: (B, N, C) prepared actions -> (E, B, N, out_dim)."""
        x = torch.cat([feat.unsqueeze(1).expand(-1, act.shape[1], -1), act], dim=-1)
        nets = self.target_q_nets if target else self.q_nets
        return torch.stack([net(x) for net in nets])

    def q_value(self, feat: Tensor, act: Tensor, target: bool = False) -> Tensor:
        """feat: (B, F), act: (B, N, C) -> (E, B, N) values."""
        return self.head.value(self.q_out(feat, act, target))

    def v_value(self, feat: Tensor) -> Tensor:
        """feat: (B, F) -> (B,)."""
        if self.v_net is None:
            raise ConfigError("This critic has no V network; its algorithm does not train one.")
        return self.v_net(feat).squeeze(-1)

    # -- public API -----------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, obs: Mapping[str, Any], actions: Tensor, goal: Mapping[str, Any] | None = None) -> Tensor:
        """obs: {key: (B, To, ...)}, actions: (B, K, T, A) env units -> (B, K), min over the ensemble.

        One batched network call for all B x K chunks.
        """
        feat = self.encode(obs, goal)
        return self.q_value(feat, self.prep_actions(actions)).min(dim=0).values

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """batch: see :class:`~robopolicy.value.dataset.TransitionDataset` -> (loss, metrics)."""
        return self.algo.compute_loss(self, batch)

    def after_step(self) -> None:
        """Called by the Trainer after every optimizer step: Polyak-update the target networks."""
        self.update_target()

    @torch.no_grad()
    def update_target(self, polyak: float | None = None) -> None:
        """target <- (1 - polyak) * target + polyak * online."""
        p = float(self.algo.polyak if polyak is None else polyak)
        for t, s in zip(self.target_q_nets.parameters(), self.q_nets.parameters()):
            t.lerp_(s, p)
