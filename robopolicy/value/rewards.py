"""Sparse success rewards and Monte-Carlo returns, labelled from stored episodes.

V-GPS (Nakamoto et al., 2024) labels the last ``H = 3`` steps of every successful trajectory as
rewarded and everything else as unrewarded; Cal-QL needs the discounted Monte-Carlo return of
each step as a lower bound on the value of the data-collecting policy.

Two schemes:

* ``"binary"``: reward 1 on the last ``H`` steps of a successful episode, 0 elsewhere.
* ``"negative"``: reward 0 on those steps, -1 elsewhere (the Cal-QL convention).

Successful episodes end in a terminal (the task is done); failing episodes are truncated (the time
limit, or recording stopped), so their return is bootstrapped with a *tail value*: 0 for
``binary``; for ``negative`` an episode that never succeeds keeps paying -1 forever, so its tail is
``-1 / (1 - gamma)`` (as in the Cal-QL reference code).
"""

from __future__ import annotations

import numpy as np

from robopolicy.errors import ConfigError

SCHEMES = ("binary", "negative")


def label_sparse_rewards(success: np.ndarray, horizon: int = 3, scheme: str = "binary") -> tuple[np.ndarray, np.ndarray]:
    """success: (T,) bool success flags after each step -> (reward (T,) float32, terminal (T,) bool).

    An episode is successful when any flag is set. Its last ``horizon`` steps are rewarded and its
    last step is terminal; a failing episode has no reward and no terminal.
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"Unknown reward scheme {scheme!r}; use one of {SCHEMES}.")
    if horizon < 1:
        raise ConfigError(f"reward horizon must be at least 1 step, got {horizon}; set critic.reward.horizon >= 1.")
    success = np.asarray(success, dtype=bool)
    T = len(success)
    lo, hi = (0.0, 1.0) if scheme == "binary" else (-1.0, 0.0)
    reward = np.full(T, lo, dtype=np.float32)
    terminal = np.zeros(T, dtype=bool)
    if T and success.any():
        reward[max(0, T - horizon):] = hi
        terminal[-1] = True
    return reward, terminal


def tail_value(scheme: str, succeeded: bool, gamma: float) -> float:
    """Value assumed after the last step of a truncated (non-terminal) episode."""
    if scheme == "negative" and not succeeded:
        return -1.0 / (1.0 - gamma)
    return 0.0


def mc_returns(reward: np.ndarray, terminal: np.ndarray, gamma: float = 0.98, tail: float = 0.0) -> np.ndarray:
    """reward: (T,), terminal: (T,) bool -> discounted return-to-go G (T,) float32.

    ``G[t] = r[t] + gamma * (1 - terminal[t]) * G[t+1]`` with ``G[T] = tail``.
    """
    reward = np.asarray(reward, dtype=np.float64)
    terminal = np.asarray(terminal, dtype=bool)
    out = np.empty(len(reward), dtype=np.float64)
    nxt = float(tail)
    for t in range(len(reward) - 1, -1, -1):
        nxt = reward[t] + gamma * (0.0 if terminal[t] else 1.0) * nxt
        out[t] = nxt
    return out.astype(np.float32)


def label_episode(success: np.ndarray, horizon: int = 3, scheme: str = "binary", gamma: float = 0.98) -> dict[str, np.ndarray]:
    """success: (T,) -> {"reward": (T,), "terminal": (T,), "mc_return": (T,)} for one episode."""
    reward, terminal = label_sparse_rewards(success, horizon, scheme)
    succeeded = bool(terminal.any())
    ret = mc_returns(reward, terminal, gamma, tail_value(scheme, succeeded, gamma))
    return {"reward": reward, "terminal": terminal, "mc_return": ret}
