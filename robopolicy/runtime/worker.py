"""Inference off the control thread.

The control thread calls :meth:`InferenceWorker.submit` at every tick with the newest observation
(cheap: it appends to the history and replaces the pending request). A daemon thread takes the
newest pending request, builds the ``To``-step history at the policy's ``dt``, calls the predictor
and leaves a :class:`~robopolicy.runtime.chunks.TimedChunk` for the control thread to
:meth:`collect`. A predictor that hangs or raises never blocks the control thread: the watchdog
notices that no chunks arrive.

Predictors (``__call__(obs_hist {k: (1, To, ...)}, prefix (m, A) | None) -> (T, A)``):

* :class:`LocalPredictor` -- a :class:`~robopolicy.policies.base.Policy` in this process (torch
  releases the GIL inside its ops; ``torch_threads`` caps torch's intra-op pool, which is
  process-wide, so inference does not starve the control thread on a 2-core machine);
* :class:`~robopolicy.runtime.client.PolicyClient` -- a policy server, local (``inference=process``)
  or remote.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections import deque
from typing import Mapping, Protocol

import numpy as np

from robopolicy.runtime.chunks import TimedChunk, chunk_from_obs
from robopolicy.runtime.threads import set_thread_cpu

log = logging.getLogger(__name__)


class Predictor(Protocol):
    obs_horizon: int
    obs_keys: list[str]
    supports_prefix: bool

    def __call__(self, obs: dict[str, np.ndarray], prefix: np.ndarray | None = None) -> np.ndarray: ...


class LocalPredictor:
    """Wraps a Policy: ``policy.sample(obs, n=1[, prefix_actions=...])[0, 0]`` as numpy (T, A)."""

    def __init__(self, policy, torch_threads: int | None = 1):
        import torch

        self.policy = policy
        self.obs_horizon = int(policy.obs_horizon)
        self.obs_keys = list(policy.obs_keys)
        self.exec_horizon = int(getattr(policy, "exec_horizon", 1))
        try:
            self.supports_prefix = "prefix_actions" in inspect.signature(policy.sample).parameters
        except (TypeError, ValueError):
            self.supports_prefix = False
        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        if hasattr(policy, "eval"):
            policy.eval()
        from robopolicy.runtime.served import EpisodeStreams

        self.streams = EpisodeStreams(getattr(policy, "device", None))

    def new_episode(self, seed: int | None) -> None:
        """Policy noise of the following calls: torch.manual_seed(seed) first, as robopolicy-eval's episodes."""
        if seed is not None:
            self.streams.start(None, int(seed))

    def __call__(self, obs: dict[str, np.ndarray], prefix: np.ndarray | None = None) -> np.ndarray:
        import torch

        with self.streams.use(None), torch.inference_mode():
            if prefix is not None and self.supports_prefix:
                out = self.policy.sample(obs, n=1, prefix_actions=torch.as_tensor(prefix)[None])
            else:
                out = self.policy.sample(obs, n=1)
        out = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
        return out[0, 0].astype(np.float32)

    def close(self) -> None:
        pass


class ObsHistory:
    """Timestamped observations; :meth:`window` gives ``To`` of them spaced ``dt_s`` apart.

    Step j of the window is the newest observation at or before ``t_last - (To-1-j) * dt`` (a
    quarter period of slack); before the first one the oldest is repeated (edge padding, as in
    training).
    """

    def __init__(self, obs_horizon: int, dt_s: float, keys: list[str]):
        self.obs_horizon = int(obs_horizon)
        self.dt_s = float(dt_s)
        self.keys = list(keys)
        self._items: deque = deque()

    def clear(self) -> None:
        self._items.clear()

    def append(self, obs: Mapping[str, np.ndarray], t: float) -> None:
        self._items.append((float(t), {k: obs[k] for k in self.keys}))
        horizon = (self.obs_horizon + 1) * self.dt_s
        while len(self._items) > 2 and self._items[1][0] < t - horizon:
            self._items.popleft()

    def window(self) -> tuple[dict[str, np.ndarray], float]:
        """({key: (1, To, ...)}, time of the newest observation)."""
        t_last = self._items[-1][0]
        picked = []
        for j in range(self.obs_horizon):
            t_want = t_last - (self.obs_horizon - 1 - j) * self.dt_s + 0.25 * self.dt_s
            choice = self._items[0][1]
            for t, o in reversed(self._items):
                if t <= t_want:
                    choice = o
                    break
            picked.append(choice)
        return {k: np.stack([np.asarray(p[k]) for p in picked])[None] for k in self.keys}, t_last


class InferenceWorker:
    """dt_s: spacing of both the observation history and the returned actions (policy rate)."""

    def __init__(self, predictor: Predictor, dt_s: float, action_offset: float = 0.0, name: str = "inference",
                 cpu: int | None = None):
        self.predictor = predictor
        self.cpu = cpu
        self.dt_s = float(dt_s)
        self.action_offset = float(action_offset)
        self.history = ObsHistory(predictor.obs_horizon, dt_s, predictor.obs_keys)
        self._cv = threading.Condition()
        self._pending: tuple | None = None  # (request id, episode, prefix)
        self._out: list[TimedChunk] = []
        self._stop = False
        self._busy = False
        self._req = 0
        self._episode = 0
        self._episode_seed: int | None = None
        self._served_episode = 0  # the episode the predictor was last told about (worker thread only)
        self.errors = 0
        self.last_error: str | None = None
        self.latencies: list[tuple[float, float]] = []  # (t_done, latency_s)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # -- control thread -------------------------------------------------------------------------
    def observe(self, obs: Mapping[str, np.ndarray], t_obs: float) -> None:
        """Add an observation to the history (every tick)."""
        with self._cv:
            self.history.append(obs, t_obs)

    def request(self, prefix: np.ndarray | None = None) -> None:
        """Ask for a chunk for the newest observation (replaces any request not yet started)."""
        with self._cv:
            self._req += 1
            self._pending = (self._req, self._episode, prefix)
            self._cv.notify_all()

    @property
    def busy(self) -> bool:
        """True while a request waits or runs."""
        with self._cv:
            return self._busy or self._pending is not None

    def collect(self) -> list[TimedChunk]:
        """Chunks finished since the last call, for the current episode only."""
        with self._cv:
            out = [c for c in self._out if c.episode == self._episode]
            self._out.clear()
        return out

    def wait_for_chunk(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` for a finished chunk."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while not self._out and not self._stop:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return bool(self._out)

    def new_episode(self, seed: int | None = None) -> None:
        """Forget the history and any pending work; late chunks of the old episode are discarded.

        seed: the episode's reset seed; a predictor with ``new_episode(seed)`` hears of it (from the
        worker thread, before the episode's first request) and seeds its policy noise with it."""
        with self._cv:
            self._episode += 1
            self._episode_seed = seed
            self._pending = None
            self._out.clear()
            self.history.clear()

    def close(self, timeout_s: float = 1.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout_s)  # a hung predictor stays behind as a daemon thread
        close = getattr(self.predictor, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - closing is best effort
                log.exception("closing the predictor failed")

    # -- worker thread --------------------------------------------------------------------------
    def _loop(self) -> None:
        if self.cpu is not None:

            set_thread_cpu(self.cpu)
        while True:
            with self._cv:
                while self._pending is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                req, episode, prefix = self._pending
                self._pending = None
                self._busy = True
                obs, t_obs = self.history.window()
                seed = self._episode_seed
            t0 = time.monotonic()
            try:
                if episode != self._served_episode:
                    self._served_episode = episode
                    hook = getattr(self.predictor, "new_episode", None)
                    if hook is not None:
                        hook(seed)
                actions = np.asarray(self.predictor(obs, prefix), dtype=np.float32)
                if actions.ndim != 2:
                    raise ValueError(f"predictor returned shape {actions.shape}, expected (T, A)")
                if prefix is not None and not getattr(self.predictor, "supports_prefix", False):
                    # No inpainting in this policy: keep the committed actions (hard freeze).
                    m = min(len(prefix), len(actions))
                    actions[:m] = prefix[:m]
            except Exception as e:  # noqa: BLE001 - any policy failure must not reach the loop
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("inference failed (%d so far); the watchdog will hold/stop if it persists", self.errors)
                with self._cv:
                    self._busy = False
                continue
            t1 = time.monotonic()
            chunk = chunk_from_obs(actions, t_obs, self.dt_s, self.action_offset, seq=req, episode=episode, latency_s=t1 - t0)
            with self._cv:
                self._busy = False
                self.latencies.append((t1, t1 - t0))
                if episode == self._episode:
                    self._out.append(chunk)
                self._cv.notify_all()
