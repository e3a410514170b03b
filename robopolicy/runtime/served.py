"""A policy behind a server: every request is checked against the policy's spec, then sampled once.

Serves any :class:`~robopolicy.policies.base.Policy`: plain, goal-conditioned (the goal travels
with the observation) and V-GPS-steered (:class:`~robopolicy.value.vgps.ValueGuidedPolicy`, whose
critic runs inside ``sample``). Requests that do not fit (a missing key, a wrong shape or dtype,
NaN) raise :class:`RequestError` with a sentence for the client; the server turns it into an error
reply.

    obs:    {key: (1, To, *shape) or (To, *shape)}   low-dim keys any real dtype, camera keys uint8
    goal:   {key: (*shape) or (1, *shape)} for each of the policy's goal keys, or None (goal-free)
    prefix: (m, A) actions already committed (real-time chunking), or None
    ->      (T, A) float32 actions, T = action_horizon - obs_horizon + 1

Episode seeds: a client that names its episode (``new_episode(seed, stream)``, a request field on
the wire) gets the policy noise of that episode drawn from its own torch RNG stream, seeded with
the episode's seed exactly as ``robopolicy-eval`` seeds each episode (``torch.manual_seed(seed)``,
then every sample of the episode in order), so a served episode can be compared one to one with
the same episode evaluated in process. Requests without an episode draw from the process's RNG.
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import contextmanager

import numpy as np


class RequestError(ValueError):
    """A request that does not fit the served policy."""


class EpisodeStreams:
    """Torch RNG streams, one per client (``stream``: any hashable; None = the in-process caller).

    ``start(stream, seed)`` begins an episode: its first draw is the first draw after
    ``torch.manual_seed(seed)``; ``use(stream)`` runs a sample inside that stream (the process's
    own RNG state is restored afterwards, as ``torch.random.fork_rng`` does in evaluation). At most
    ``max_streams`` are kept (least recently used dropped). Not thread-safe: callers hold a lock.
    """

    def __init__(self, device=None, max_streams: int = 1024):
        import torch

        dev = torch.device(device) if device is not None else torch.device("cpu")
        self._cuda = [dev.index or 0] if dev.type == "cuda" else []
        self._states: OrderedDict = OrderedDict()  # stream -> (seed, cpu state | None, cuda state | None)
        self.max_streams = int(max_streams)

    def start(self, stream, seed: int) -> None:
        self._states[stream] = (int(seed), None, None)
        self._states.move_to_end(stream)
        while len(self._states) > self.max_streams:
            self._states.popitem(last=False)

    def __contains__(self, stream) -> bool:
        return stream in self._states

    @contextmanager
    def use(self, stream):
        """Draws inside the block come from ``stream`` (unchanged process RNG when it has none)."""
        import torch

        if stream not in self._states:
            yield
            return
        seed, cpu, cuda = self._states[stream]
        with torch.random.fork_rng(devices=self._cuda):
            if cpu is None:  # what torch.manual_seed(seed) does to this process's CPU and device generators
                torch.random.default_generator.manual_seed(seed)
                if self._cuda:
                    with torch.cuda.device(self._cuda[0]):
                        torch.cuda.manual_seed(seed)
            else:
                torch.set_rng_state(cpu)
                if self._cuda and cuda is not None:
                    torch.cuda.set_rng_state(cuda, self._cuda[0])
            try:
                yield
            finally:
                self._states[stream] = (seed, torch.get_rng_state(),
                                        torch.cuda.get_rng_state(self._cuda[0]) if self._cuda else None)
                self._states.move_to_end(stream)


class ServedPolicy:
    def __init__(self, policy, torch_threads: int | None = None, goal: Mapping[str, np.ndarray] | None = None):
        import torch

        base = getattr(policy, "policy", policy)  # the policy inside a ValueGuidedPolicy
        self.policy = policy
        self.spec = policy.spec
        self.obs_keys = list(policy.obs_keys)
        self.goal_keys = list(getattr(base, "goal_keys", None) or [])
        self.obs_horizon = int(policy.obs_horizon)
        self.action_horizon = int(policy.action_horizon)
        self.exec_horizon = int(policy.exec_horizon)
        self.chunk_len = self.action_horizon - self.obs_horizon + 1
        self.action_dim = int(self.spec.action_dim)
        self.steered = hasattr(policy, "critic")
        self.default_goal = dict(goal) if goal else None
        try:
            self.supports_prefix = "prefix_actions" in inspect.signature(policy.sample).parameters
        except (TypeError, ValueError):
            self.supports_prefix = False
        # One sample at a time per model: diffusers schedulers keep per-call state (timesteps, step
        # index, solver history) and a steered policy draws from its own torch.Generator, neither of
        # which threads may share. Request checks and encoding still overlap across the pool.
        self._lock = threading.Lock()
        self.streams = EpisodeStreams(getattr(policy, "device", None))
        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        policy.eval()

    def describe(self) -> dict:
        """What a client needs to build requests (JSON-able)."""
        return {"obs_keys": self.obs_keys, "obs_horizon": self.obs_horizon, "goal_keys": self.goal_keys,
                "obs_shapes": {k: list(self.spec.obs[k].shape) for k in self.obs_keys},
                "obs_dtypes": {k: "uint8" if self.spec.obs[k].kind == "rgb" else "float32" for k in self.obs_keys},
                "action_dim": self.action_dim, "action_horizon": self.action_horizon, "chunk_len": self.chunk_len,
                "exec_horizon": self.exec_horizon, "supports_prefix": self.supports_prefix, "steered": self.steered,
                "control_hz": float(self.spec.control_hz), "task": self.spec.name}

    def check_obs(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{key: (To, ...) or (1, To, ...)} -> {key: (1, To, ...)} writable, dtype per the spec."""
        out = {}
        for k in self.obs_keys:
            if k not in obs:
                raise RequestError(f"observation key {k!r} is missing; send {self.obs_keys}")
            ks = self.spec.obs[k]
            a = np.asarray(obs[k])
            want = (self.obs_horizon, *ks.shape)
            if a.shape == want:
                a = a[None]
            if a.shape != (1, *want):
                raise RequestError(f"observation {k!r} has shape {list(a.shape)}, expected {list(want)} or [1, *that]")
            out[k] = _checked(k, a, ks.kind)
        return out

    def check_goal(self, goal: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
        """{key: (*shape) or (1, *shape)} -> {key: (1, *shape)}; None stays None (goal-free sampling)."""
        if not goal:
            return None
        if not self.goal_keys:
            raise RequestError("this policy is not goal-conditioned; send no goal")
        out = {}
        for k in self.goal_keys:
            if k not in goal:
                raise RequestError(f"goal key {k!r} is missing; send {self.goal_keys}")
            ks = self.spec.obs[k]
            a = np.asarray(goal[k])
            if a.shape == tuple(ks.shape):
                a = a[None]
            if a.shape != (1, *ks.shape):
                raise RequestError(f"goal {k!r} has shape {list(a.shape)}, expected {list(ks.shape)}")
            out[k] = _checked(f"goal {k}", a, ks.kind)
        return out

    def check_prefix(self, prefix: np.ndarray | None) -> np.ndarray | None:
        if prefix is None:
            return None
        p = np.asarray(prefix)
        if p.ndim != 2 or p.shape[1] != self.action_dim or p.shape[0] > self.chunk_len:
            raise RequestError(f"prefix has shape {list(p.shape)}, expected [m <= {self.chunk_len}, {self.action_dim}]")
        return _checked("prefix", p, "lowdim")

    def new_episode(self, seed: int | None, stream=None) -> None:
        """The next requests of ``stream`` belong to the episode reset with ``seed`` (None: no stream)."""
        if seed is None:
            return
        with self._lock:
            self.streams.start(stream, check_episode_seed(seed))

    def __call__(self, obs: Mapping[str, np.ndarray], prefix: np.ndarray | None = None,
                 goal: Mapping[str, np.ndarray] | None = None, stream=None) -> np.ndarray:
        import torch

        o = self.check_obs(obs)
        g = self.check_goal(goal if goal else self.default_goal)
        p = self.check_prefix(prefix)
        kwargs = {"goal": g}
        if p is not None and self.supports_prefix:
            kwargs["prefix_actions"] = torch.as_tensor(p)[None]
        with self._lock, self.streams.use(stream), torch.inference_mode():
            out = self.policy.sample(o, n=1, **kwargs)
        actions = out.detach().cpu().numpy()[0, 0].astype(np.float32)
        if p is not None and not self.supports_prefix:
            actions[: len(p)] = p[: len(actions)]  # no inpainting in this policy: keep the committed actions
        if not np.isfinite(actions).all():
            raise RequestError("the policy produced non-finite actions for this observation")
        return actions

    def close(self) -> None:
        pass


def check_episode_seed(seed) -> int:
    """An episode seed from a request: a non-negative integer below 2**63 (torch.manual_seed's range)."""
    if isinstance(seed, np.ndarray) and seed.ndim == 0:
        seed = seed.item()
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise RequestError(f"episode seed {str(seed)[:40]!r} must be an integer in [0, 2**63)")
    return int(seed)


def _checked(name: str, a: np.ndarray, kind: str) -> np.ndarray:
    if kind == "rgb":
        if a.dtype != np.uint8:
            raise RequestError(f"{name} is a camera key and must be uint8, got {a.dtype}")
        return np.array(a)
    if a.dtype.kind not in "biuf":
        raise RequestError(f"{name} must be numeric, got {a.dtype}")
    a = np.array(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise RequestError(f"{name} contains NaN or inf (after conversion to float32)")
    return a
