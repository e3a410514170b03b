"""Client of the policy server (ZeroMQ DEALER, one request in flight, per-request timeout).

Needs only numpy and pyzmq (it imports nothing of robopolicy but the wire format and the error
types), so it runs on a robot computer without torch or the simulators.

It is a predictor for :class:`~robopolicy.runtime.worker.InferenceWorker`. A request that gets no
reply within ``timeout_s`` raises :class:`ServerTimeout`; the socket is then thrown away and a new
one connects (the "lazy pirate" pattern), so a restarted server is picked up at the next request
and late replies to old requests are discarded by id. To the runner a dead server looks exactly
like a stalled policy: no chunks arrive and the watchdog holds, then stops.
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import zmq

from robopolicy.errors import ConfigError
from robopolicy.runtime.wire import WireError, decode, encode

log = logging.getLogger(__name__)


class ServerTimeout(TimeoutError):
    """No reply from the policy server in time."""


class ServerError(RuntimeError):
    """The server answered with an error; ``code`` says which kind (auth, version, bad_request,
    request, busy, policy, internal; see docs/WIRE.md)."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code


def read_goal(goal) -> dict[str, np.ndarray] | None:
    """A goal given on the command line: a ``.npz`` file of arrays per goal key, or a mapping
    {key: list of numbers}; None stays None."""
    if goal is None or goal == "" or goal == {}:
        return None
    if isinstance(goal, str):
        try:
            with np.load(goal, allow_pickle=False) as z:
                return {k: np.asarray(z[k], np.float32) for k in z.files}
        except (OSError, ValueError) as e:
            raise ConfigError(f"goal={goal} is not a readable .npz file of goal arrays ({e}); write one with numpy.savez.") from None
    try:
        return {str(k): np.asarray(v, np.float32) for k, v in dict(goal).items()}
    except (TypeError, ValueError) as e:
        raise ConfigError(f"goal must map each goal key to a list of numbers (e.g. goal.state=[0.1,0.2]): {e}.") from None


class PolicyClient:
    """Predictor ``(obs {k: (1, To, ...)}, prefix (m, A) | None) -> (T, A)`` served remotely.

    goal: {key: (...)} sent with every request (goal-conditioned policies); change it with
    :meth:`set_goal`. ``info`` holds the server's description of the policy.
    """

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", token: str | None = None, timeout_s: float = 1.0,
                 connect_timeout_s: float = 10.0, context: zmq.Context | None = None, goal=None,
                 max_reply_bytes: int = 1 << 28):
        self.endpoint = endpoint
        self.token = token or None
        self.max_reply_bytes = int(max_reply_bytes)
        self.timeout_s = float(timeout_s)
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._ids = itertools.count(1)
        self.reconnects = 0
        self.round_trips: list[tuple[float, float]] = []  # (round trip s, server inference s)
        deadline = time.monotonic() + connect_timeout_s
        while True:
            try:
                info = self._request({"op": "info"}, timeout_s=min(self.timeout_s, max(0.05, deadline - time.monotonic())))["info"]
                break
            except ServerTimeout:
                if time.monotonic() >= deadline:
                    self.close()
                    raise ConfigError(f"No policy server answered at {endpoint} within {connect_timeout_s:g} s; start robopolicy-policy-server or fix server=.") from None
            except ServerError as e:
                self.close()
                fix = {"auth": "check token=", "version": "use a client of the same robopolicy release as the server"}
                raise ConfigError(f"The policy server at {endpoint} refused the connection ({e}); "
                                  f"{fix.get(e.code, 'see the server log')}.") from None
        self.info = info
        self.obs_horizon = int(info["obs_horizon"])
        self.obs_keys = list(info["obs_keys"])
        self.goal_keys = list(info.get("goal_keys", []))
        self.supports_prefix = bool(info["supports_prefix"])
        self.exec_horizon = int(info.get("exec_horizon", 1))
        self.goal: dict[str, np.ndarray] | None = None
        self.set_goal(goal)
        self.episode: dict | None = None  # {"seed", "start"} sent with each request (see new_episode)

    def new_episode(self, seed: int | None) -> None:
        """The following requests belong to the episode reset with ``seed``: the server draws their
        policy noise from a stream seeded with it, as robopolicy-eval does (None: the server's RNG)."""
        self.episode = None if seed is None else {"seed": int(seed), "start": True}

    def set_goal(self, goal) -> None:
        """Goal for the following requests ({key: (...)}, or None for goal-free sampling)."""
        goal = read_goal(goal)
        if goal is not None:
            if not self.goal_keys:
                self.close()
                raise ConfigError(f"The policy served at {self.endpoint} is not goal-conditioned; drop goal=.")
            missing = [k for k in self.goal_keys if k not in goal]
            if missing:
                self.close()
                raise ConfigError(f"The goal lacks key(s) {missing}; the served policy needs goal keys {self.goal_keys}.")
            goal = {k: goal[k] for k in self.goal_keys}
        self.goal = goal

    def __call__(self, obs: dict[str, np.ndarray], prefix: np.ndarray | None = None) -> np.ndarray:
        arrays = {f"obs/{k}": v for k, v in obs.items()}
        for k, v in (self.goal or {}).items():
            arrays[f"goal/{k}"] = v
        if prefix is not None:
            arrays["prefix"] = np.asarray(prefix, np.float32)
        header = {"op": "infer"}
        episode = self.episode
        if episode is not None:
            header["episode"] = dict(episode)
        t0 = time.perf_counter()
        rep, out = self._request(header, arrays, with_arrays=True)
        if episode is not None:
            episode["start"] = False  # answered: the server has begun the episode's stream
        self.round_trips.append((time.perf_counter() - t0, float(rep.get("infer_s", 0.0))))
        return np.array(out["actions"], dtype=np.float32)

    def ping(self) -> bool:
        try:
            self._request({"op": "ping"})
            return True
        except (ServerTimeout, ServerError):
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    # -- transport ------------------------------------------------------------------------------
    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            s = self._ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.IMMEDIATE, 1)  # queue only on live connections
            s.setsockopt(zmq.MAXMSGSIZE, self.max_reply_bytes)
            s.connect(self.endpoint)
            self._sock = s
        return self._sock

    def _request(self, header: dict, arrays=None, with_arrays: bool = False, timeout_s: float | None = None):
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        rid = next(self._ids)
        h = dict(header, id=rid)
        frames = encode(h, arrays, token=self.token)
        sock = self._socket()
        deadline = time.monotonic() + timeout_s
        try:
            sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            # No live connection yet: wait for one within the timeout.
            if not sock.poll(max(1, int(timeout_s * 1000)), zmq.POLLOUT):
                self._drop_socket()
                raise ServerTimeout(f"no policy server at {self.endpoint}") from None
            sock.send_multipart(frames, copy=False)
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not sock.poll(left_ms, zmq.POLLIN):
                self._drop_socket()
                raise ServerTimeout(f"policy server at {self.endpoint} did not answer within {timeout_s:g} s")
            try:
                rep, out = decode(sock.recv_multipart(), max_message_bytes=self.max_reply_bytes)
            except WireError as e:
                raise ServerError(f"unreadable reply ({e}); the server may speak another wire version", "version") from None
            if rep.get("id") != rid and rep.get("code") not in ("auth", "version"):
                continue  # a late reply to an earlier, timed-out request (auth/version errors carry no id)
            if not rep.get("ok"):
                raise ServerError(str(rep.get("error", "unknown error")), str(rep.get("code", "")))
            return (rep, out) if with_arrays else rep

    def _drop_socket(self) -> None:
        self.close()
        self.reconnects += 1
