"""Evaluation: the shared episode protocol, vectorized seeded rollouts, success with a Wilson interval, sweep reports."""

from robopolicy.evaluation.episodes import SEED_BLOCK, EpisodeRecord, episode_seed, episode_seeds, run_episode
from robopolicy.evaluation.rollout import evaluate_policy, make_vector_env
from robopolicy.evaluation.stats import pooled_success, wilson_interval

__all__ = ["SEED_BLOCK", "EpisodeRecord", "episode_seed", "episode_seeds", "run_episode", "evaluate_policy", "make_vector_env", "pooled_success", "wilson_interval"]
