"""Offline critics (IQL, Cal-QL; scalar or HL-Gauss heads) and V-GPS value-guided re-ranking.

rewards.py (sparse success labels, MC returns) -> dataset.py (transitions from an EpisodeStore) ->
critic.py + offline_rl.py + losses.py (the networks and the learning rules) -> train.py (the one
Trainer) -> vgps.py (ValueGuidedPolicy, load_critic, the steer=vgps factory).
"""

from robopolicy.value.critic import Critic
from robopolicy.value.vgps import ValueGuidedPolicy, load_critic, make_vgps

__all__ = ["Critic", "ValueGuidedPolicy", "load_critic", "make_vgps"]
