"""V-GPS (Nakamoto et al., 2024): value-guided re-ranking of any policy's action chunks.

At each re-plan, draw K chunks per observation from the base policy in ONE batched ``sample``
call, score all of them with the critic in ONE batched call, and keep the argmax (``beta=0``) or a
draw from softmax(Q / beta). ``random=True`` picks uniformly among the K: the control showing that
the critic, not the extra samples, does the work.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from robopolicy.errors import CheckpointError, ConfigError
from robopolicy.policies.base import ChunkSampler, ObsDict, Policy
from robopolicy.value.critic import Critic


def select_chunks(scores: Tensor, beta: float = 0.0, random: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """scores: (B, n, K) -> indices (B, n) into K: argmax (beta == 0), softmax(Q/beta) draws, or uniform (random)."""
    b, n, k = scores.shape
    flat = scores.reshape(b * n, k).float().cpu()
    if random:
        idx = torch.randint(0, k, (b * n,), generator=generator)
    elif beta <= 0.0:
        idx = flat.argmax(dim=-1)
    else:
        probs = torch.softmax(flat / float(beta), dim=-1)
        idx = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return idx.view(b, n).to(scores.device)


def check_critic_matches(policy: Policy, critic: Critic) -> None:
    """Raise CheckpointError unless the critic reads what the policy sees and scores what it emits."""
    critic.spec.check_compatible(policy.spec, keys=critic.obs_keys, what="critic")
    if critic.spec.name and policy.spec.name and critic.spec.name != policy.spec.name:
        # Meta-World tasks share one observation/action layout, so shapes alone cannot tell them apart.
        raise CheckpointError(f"The critic was trained on task {critic.spec.name!r} but the policy on {policy.spec.name!r}; "
                              "train a critic on data of the policy's task.")
    missing = [k for k in critic.obs_keys if k not in policy.obs_keys]
    if missing:
        raise CheckpointError(f"The critic reads observation keys {missing} that the policy does not use (it uses "
                              f"{policy.obs_keys}); train the critic with obs_keys the policy has.")
    if critic.obs_horizon > policy.obs_horizon:
        raise CheckpointError(f"The critic needs {critic.obs_horizon} observation steps but the policy keeps only "
                              f"{policy.obs_horizon}; train the critic with obs_horizon <= {policy.obs_horizon}.")
    chunk = policy.action_horizon - policy.obs_horizon + 1
    if critic.chunk_len > chunk:
        raise CheckpointError(f"The critic scores chunks of {critic.chunk_len} actions but the policy samples {chunk}; "
                              "train the critic with a shorter chunk_len.")


class ValueGuidedPolicy(ChunkSampler):
    """A :class:`ChunkSampler` that samples ``k`` chunks from ``policy`` and keeps the critic's favourite.

    Not trainable: train the base policy (robopolicy-train) and the critic (robopolicy-train-critic).
    """

    def __init__(self, policy: Policy, critic: Critic, k: int = 10, beta: float = 0.0, random: bool = False, seed: int = 0):
        if int(k) < 1:
            raise ConfigError(f"steer.k must be at least 1, got {k}.")
        if beta < 0:
            raise ConfigError(f"steer.beta must be >= 0 (0 = argmax), got {beta}.")
        super().__init__(policy.spec, policy.obs_keys, policy.obs_horizon, policy.action_horizon, policy.exec_horizon)
        check_critic_matches(policy, critic)
        self.policy, self.critic = policy, critic.eval()
        self.k, self.beta, self.random = int(k), float(beta), bool(random)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.last_scores: Tensor | None = None

    def reset(self) -> None:
        self.policy.reset()

    @torch.inference_mode()
    def sample(self, obs: ObsDict, n: int = 1, goal: ObsDict | None = None) -> Tensor:
        """obs: {key: (B, To, ...)} -> (B, n, Tp-To+1, A): per output, the chosen one of ``k`` base samples."""
        chunks = self.policy.sample(obs, n * self.k, goal=goal)  # (B, n*k, T, A): one batched call
        if self.k == 1:  # nothing to rank
            return chunks
        b, _, t, a = chunks.shape
        scores = self.critic.score(obs, chunks, goal=goal if self.critic.goal_keys else None)  # (B, n*k): one call
        scores = scores.view(b, n, self.k)
        self.last_scores = scores
        idx = select_chunks(scores, self.beta, self.random, self.generator).to(chunks.device)  # (B, n)
        grouped = chunks.view(b, n, self.k, t, a)
        return grouped.gather(2, idx.view(b, n, 1, 1, 1).expand(b, n, 1, t, a)).squeeze(2)


def load_critic(run_dir: str | Path, checkpoint: str = "last", device: str | torch.device = "auto") -> Critic:
    """A critic run (made by robopolicy-train-critic) through :func:`robopolicy.api.load_run` (checked, no pickle)."""
    from robopolicy.api import load_run

    run = load_run(run_dir, checkpoint, device=str(device))
    if run.kind != "critic" or not isinstance(run.model, Critic):
        raise CheckpointError(f"{str(run_dir)!r} is not a critic run (its config has no 'critic' section); "
                              "pass a run made by robopolicy-train-critic.")
    return run.model


def make_vgps(policy: Policy, critic: str | Path | Critic, *, k: int, beta: float, random: bool,
              device: str | torch.device, checkpoint: str, seed: int) -> ValueGuidedPolicy:
    """Hydra factory for ``conf/steer/vgps.yaml``: ``critic`` is a critic run directory or a Critic."""
    if critic is None or critic == "":
        raise ConfigError("steer=vgps needs a critic run: add steer.critic=RUN_DIR (made by robopolicy-train-critic).")
    if not isinstance(critic, Critic):
        critic = load_critic(critic, checkpoint, device=policy.device if device == "auto" else device)
    return ValueGuidedPolicy(policy, critic.to(policy.device), k=k, beta=beta, random=random, seed=seed)
