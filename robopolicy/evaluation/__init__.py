"""Evaluation: vectorized seeded rollouts, success with a Wilson interval, sweep reports."""

from robopolicy.evaluation.rollout import evaluate_policy, make_vector_env
from robopolicy.evaluation.stats import pooled_success, wilson_interval

__all__ = ["evaluate_policy", "make_vector_env", "pooled_success", "wilson_interval"]
