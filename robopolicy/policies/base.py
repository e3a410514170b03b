"""The one policy interface that training, evaluation, V-GPS and the runner are written against.

Conventions (every policy, every caller):

* Observations are dicts ``key -> array`` in *raw environment units*: low-dimensional keys float32,
  camera keys uint8 ``(H, W, 3)``. Batched observation histories have shape ``(B, To, ...)``.
  The policy owns all preprocessing (normalisation, image scaling, cropping).
* A training window covers steps ``t-To+1 .. t-To+Tp``: the first ``To`` observations and ``Tp``
  actions. The action for the *current* step is index ``To-1`` of the chunk.
* :meth:`Policy.sample` returns the *future part* of the chunk, from the current step on:
  ``(B, n, Tp-To+1, A)`` in environment units (un-normalised). ``predict_chunk`` returns its first
  ``Ta`` (``exec_horizon``) actions for one observation history.
"""

from __future__ import annotations

import abc
from collections import deque
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import ConfigError
from robopolicy.nets.obs_preprocessor import to_device

ObsDict = Mapping[str, Any]


class ChunkSampler(nn.Module, abc.ABC):
    """Anything that samples action chunks: what evaluation, V-GPS, the runner and the server need.

    Subclasses implement :meth:`sample`; trainable policies are :class:`Policy` (adds
    :meth:`Policy.compute_loss`), wrappers such as V-GPS's ``ValueGuidedPolicy`` are samplers only.
    ``sampler_cfg`` is the sampler in use (``{}`` for policies without one, e.g. BC).
    """

    sampler_cfg: Mapping[str, Any] = {}

    def __init__(self, spec: EnvSpec, obs_keys: list[str], obs_horizon: int, action_horizon: int, exec_horizon: int):
        # Horizons have no defaults here: the task's YAML (obs_horizon, action_horizon, exec_horizon) is their one place.
        super().__init__()
        self.spec = spec
        self.obs_keys = list(obs_keys)
        self.obs_horizon = int(obs_horizon)
        self.action_horizon = int(action_horizon)
        self.exec_horizon = int(exec_horizon)
        if not 1 <= self.exec_horizon <= self.action_horizon - self.obs_horizon + 1:
            raise ConfigError(
                f"exec_horizon={exec_horizon} must be between 1 and action_horizon-obs_horizon+1="
                f"{self.action_horizon - self.obs_horizon + 1}; set task.exec_horizon within that range."
            )

    # -- inference ------------------------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, obs: ObsDict, n: int = 1, goal: ObsDict | None = None) -> torch.Tensor:
        """obs: {key: (B, To, ...)} tensors or arrays -> (B, n, Tp-To+1, A) actions, env units.

        The n chunks per observation come from one batched network call per denoising step.
        """

    @property
    def device(self) -> torch.device:
        """The device of the first parameter (or buffer); cached, and reset whenever the module moves."""
        dev = self.__dict__.get("_device_cache")
        if dev is None:
            dev = next((t.device for t in self.parameters()), None) or next((b.device for b in self.buffers()), torch.device("cpu"))
            self.__dict__["_device_cache"] = dev
        return dev

    def _apply(self, fn, *args, **kwargs):
        # .to() / .cuda() / .cpu() / .half() all go through _apply: forget the cached device.
        self.__dict__["_device_cache"] = None
        return super()._apply(fn, *args, **kwargs)

    def reset(self) -> None:
        """Clear any per-episode state (none by default; the controller keeps histories)."""

    @torch.inference_mode()
    def predict_chunk(self, obs_history: ObsDict, goal: ObsDict | None = None) -> np.ndarray:
        """obs_history: {key: (To, ...)} -> (Ta, A) numpy actions to execute from the current step."""
        batched = {k: np.asarray(v)[None] for k, v in obs_history.items()}
        g = None if goal is None else {k: np.asarray(v)[None] for k, v in goal.items()}
        out = self.sample(batched, n=1, goal=g)
        return out[0, 0, : self.exec_horizon].detach().cpu().numpy()

    def to_tensor_obs(self, obs: ObsDict) -> dict[str, torch.Tensor]:
        """Move an obs dict (arrays or tensors) to this policy's device, keeping dtypes (uint8 stays uint8)."""
        return {k: to_device(v, self.device) for k, v in obs.items()}


class Policy(ChunkSampler):
    """A trainable chunk sampler. Subclasses implement :meth:`compute_loss` and :meth:`sample`."""

    @abc.abstractmethod
    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """batch: ``obs`` {key: (B, To, ...)}, ``action`` (B, Tp, A), optional ``goal`` {key: (B, ...)}.

        Returns the scalar loss and a dict of floats to log.
        """


class RecedingHorizonController:
    """Runs a policy in closed loop on a batch of B synchronous environments.

    Keeps the last ``To`` observations per environment (the first observation repeated at an
    episode start) and a queue of planned actions; re-plans every ``exec_horizon`` steps.
    ``policy`` is anything with ``sample``, ``obs_horizon`` and ``exec_horizon`` (so a
    ValueGuidedPolicy works too).
    """

    def __init__(self, policy: ChunkSampler, exec_horizon: int | None = None, goal: ObsDict | None = None):
        self.policy = policy
        self.exec_horizon = int(exec_horizon or policy.exec_horizon)
        self.goal = goal
        self._hist: deque | None = None
        self._queue: np.ndarray | None = None
        self._qpos = 0
        self.last_latency_s: float | None = None
        self.latencies_s: list[float] = []

    def reset(self) -> None:
        self._hist = None
        self._queue = None
        self._qpos = 0
        self.policy.reset()

    def _push(self, obs: ObsDict) -> None:
        obs = {k: np.asarray(v) for k, v in obs.items() if k in self.policy.obs_keys}
        if self._hist is None:
            self._hist = deque([obs] * self.policy.obs_horizon, maxlen=self.policy.obs_horizon)
        else:
            self._hist.append(obs)

    def history(self) -> dict[str, np.ndarray]:
        """{key: (B, To, ...)} stacked history."""
        assert self._hist is not None
        return {k: np.stack([h[k] for h in self._hist], axis=1) for k in self._hist[0]}

    @torch.no_grad()
    def act(self, obs: ObsDict) -> np.ndarray:
        """obs: {key: (B, ...)} -> actions (B, A)."""
        import time

        self._push(obs)
        if self._queue is None or self._qpos >= self.exec_horizon:
            t0 = time.perf_counter()
            chunk = self.policy.sample(self.history(), n=1, goal=self.goal)
            self._queue = chunk[:, 0, : self.exec_horizon].detach().cpu().numpy()
            self.last_latency_s = time.perf_counter() - t0
            self.latencies_s.append(self.last_latency_s)
            self._qpos = 0
        a = self._queue[:, self._qpos]
        self._qpos += 1
        return a
