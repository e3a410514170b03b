"""What every chunk policy here shares: input checks, observation/goal encoding, action scaling.

:class:`ChunkPolicy` turns raw observation histories into one conditioning vector per sample:
``cond = [obs features (To flattened), goal features]``. The goal part is either the encoded goal
observation or a learned *null token* (no goal given, or dropped for classifier-free guidance).
Observations go through the shared
:class:`~robopolicy.nets.obs_preprocessor.ObservationPreprocessor` (the critics use the same one).
Subclasses implement the loss and the sampler.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import ConfigError, DataError
from robopolicy.nets.obs_preprocessor import ObservationPreprocessor
from robopolicy.policies.base import ObsDict, Policy


class ChunkPolicy(Policy):
    """Shared base of DiffusionPolicy, BESOPolicy and BCPolicy.

    Args:
        spec: the task's EnvSpec. normalizer: fitted Normalizer (keys: obs keys and ``action``).
        obs_keys: observation keys to use (None: every key of the spec).
        goal_keys: keys of ``batch["goal"]`` to condition on (None: no goal conditioning).
        encoder: ObsEncoder options (lowdim_hidden_dims, rgb, share_rgb_encoder, augment, ...), see ObservationPreprocessor.
        cond_drop_prob: probability of replacing the goal by the null token in training.
    """

    def __init__(self, spec: EnvSpec, normalizer: nn.Module, *, obs_keys: Sequence[str] | None,
                 goal_keys: Sequence[str] | None, obs_horizon: int, action_horizon: int,
                 exec_horizon: int, encoder: Mapping[str, Any] | None, cond_drop_prob: float):
        # No defaults: every value comes from conf/policy/<name>.yaml (robopolicy.defaults.group_config in Python).
        obs_keys = list(spec.obs) if obs_keys is None else list(obs_keys)
        super().__init__(spec, obs_keys, obs_horizon, action_horizon, exec_horizon)
        if not 0.0 <= float(cond_drop_prob) < 1.0:
            raise ConfigError(f"cond_drop_prob={cond_drop_prob} must be in [0, 1).")
        self.normalizer = normalizer
        self.action_dim = int(spec.action_dim)
        self.goal_keys = list(goal_keys) if goal_keys else []
        self.cond_drop_prob = float(cond_drop_prob)
        self.obs_encoder = ObservationPreprocessor(spec, self.obs_keys, self.obs_horizon, normalizer, encoder)
        self.goal_encoder = ObservationPreprocessor(spec, self.goal_keys, None, normalizer, encoder, "goal") if self.goal_keys else None
        goal_dim = self.goal_encoder.out_dim if self.goal_encoder is not None else 0
        self.null_goal = nn.Parameter(torch.zeros(goal_dim)) if goal_dim else None
        self.cond_dim = self.obs_encoder.out_dim + goal_dim

    def encode(self, obs: ObsDict, goal: ObsDict | None = None, drop_goal: torch.Tensor | None = None) -> torch.Tensor:
        """obs {key: (B, To, ...)}, goal {key: (B, ...)} or None -> cond (B, cond_dim).

        drop_goal: optional (B,) bool; True rows get the null goal token (classifier-free guidance).
        """
        feats = self.obs_encoder(obs, self.device)
        if self.goal_encoder is None:
            return feats
        b = feats.shape[0]
        null = self.null_goal.expand(b, -1)
        if goal is None:
            return torch.cat([feats, null], dim=-1)
        g = self.goal_encoder(goal, self.device)
        if drop_goal is not None:
            g = torch.where(drop_goal[:, None], null, g)
        return torch.cat([feats, g], dim=-1)

    def unconditioned(self, cond: torch.Tensor) -> torch.Tensor:
        """cond (N, cond_dim) -> the same with the goal part replaced by the null token."""
        g = self.null_goal.shape[0]
        return torch.cat([cond[:, :-g], self.null_goal.expand(cond.shape[0], -1)], dim=-1)

    def encode_batch(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch -> (cond (B, cond_dim), normalised actions (B, Tp, A)), with goal dropout."""
        action = torch.as_tensor(np.asarray(batch["action"]) if not isinstance(batch["action"], torch.Tensor) else batch["action"])
        action = action.to(self.device).float()
        if action.dim() != 3 or tuple(action.shape[1:]) != (self.action_horizon, self.action_dim):
            raise DataError(f"batch['action'] has shape {tuple(action.shape)} but the policy expects (B, {self.action_horizon}, "
                            f"{self.action_dim}); build the dataset with the policy's action_horizon.")
        goal = batch.get("goal") if self.goal_encoder is not None else None
        if self.goal_encoder is not None and goal is None:
            raise DataError("The policy is goal-conditioned (goal_keys set) but the batch has no 'goal'; build the dataset with goal_keys.")
        drop = None
        if goal is not None and self.training and self.cond_drop_prob > 0:
            drop = torch.rand(action.shape[0], device=self.device) < self.cond_drop_prob
        cond = self.encode(batch["obs"], goal, drop)
        return cond, self.normalizer.normalize("action", action)

    def chunk_to_env(self, x: torch.Tensor, b: int, n: int) -> torch.Tensor:
        """Normalised chunks (B*n, Tp, A) -> env-unit future part (B, n, Tp-To+1, A)."""
        x = x.view(b, n, self.action_horizon, self.action_dim)[:, :, self.obs_horizon - 1:]
        return self.normalizer.unnormalize("action", x)
