"""Episode recording into the episode store, so deployment data can be trained on.

At every tick the runner hands over the observation and the action actually sent; reward,
success and done of that step are taken from the robot's status at the next tick (the effect of
an action is seen one tick later). An episode is appended with ``EpisodeStore.append_episode``
(atomic) when it ends, between episodes and outside the timed loop, so a kill loses at most the
episode in progress, never a finished one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from robopolicy.envs.spec import EnvSpec
from robopolicy.runtime.robot import RobotStatus

log = logging.getLogger(__name__)


class EpisodeRecorder:
    def __init__(self, path: str | Path, spec: EnvSpec, provenance: dict | None = None):
        from robopolicy.data.store import EpisodeStore

        path = Path(path)
        if path.exists():
            self.store = EpisodeStore.open(path, mode="a")
            spec.check_compatible(self.store.spec, what="robot")
        else:
            self.store = EpisodeStore.create(path, spec, attrs=dict(provenance or {}, source="robopolicy-deploy"))
        self.spec = spec
        self._steps: list[tuple[dict, np.ndarray]] = []
        self._rewards: list[float] = []
        self._success: list[bool] = []
        self._last_reward = 0.0
        self.episodes_written = 0

    def start_episode(self) -> None:
        self._steps.clear()
        self._rewards.clear()
        self._success.clear()
        self._last_reward = 0.0

    def step(self, obs: Mapping[str, np.ndarray], action_sent: np.ndarray, status_before: RobotStatus) -> None:
        """obs before the action, the action sent; ``status_before`` closes the previous step."""
        if self._steps:
            self._close_previous(status_before)
        self._steps.append(({k: obs[k] for k in self.spec.obs}, np.asarray(action_sent, np.float32)))

    def end_episode(self, status: RobotStatus) -> bool:
        """Append the episode (if it has steps); returns whether one was written."""
        if not self._steps:
            return False
        self._close_previous(status)
        n = len(self._steps)
        ep = {k: np.stack([o[k] for o, _ in self._steps]) for k in self.spec.obs}
        ep["action"] = np.stack([a for _, a in self._steps])
        ep["reward"] = np.asarray(self._rewards, np.float32)
        ep["success"] = np.asarray(self._success, bool)
        ep["done"] = np.zeros(n, bool)
        ep["done"][-1] = bool(status.done)
        self.store.append_episode(ep)
        self.episodes_written += 1
        self.start_episode()
        return True

    def _close_previous(self, status: RobotStatus) -> None:
        self._rewards.append(float(status.reward) - self._last_reward)
        self._last_reward = float(status.reward)
        self._success.append(bool(status.success))
