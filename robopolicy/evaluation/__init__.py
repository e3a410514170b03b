"""Evaluation: vectorized seeded rollouts, success with a Wilson interval, sweep reports."""

from robopolicy.evaluation.rollout import SEED_BLOCK, episode_seeds, evaluate_policy, make_vector_env
from robopolicy.evaluation.stats import pooled_success, wilson_interval

__all__ = ["SEED_BLOCK", "episode_seeds", "evaluate_policy", "make_vector_env", "pooled_success", "wilson_interval"]
