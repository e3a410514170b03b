"""Client of the policy server (ZeroMQ DEALER, one request in flight, per-request timeout).

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
from robopolicy.runtime.wire import decode, encode

log = logging.getLogger(__name__)


class ServerTimeout(TimeoutError):
    """No reply from the policy server in time."""


class ServerError(RuntimeError):
    """The server answered with an error."""


class PolicyClient:
    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", token: str | None = None, timeout_s: float = 1.0,
                 connect_timeout_s: float = 10.0, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.token = token or None
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
                raise ConfigError(f"The policy server at {endpoint} refused the connection ({e}); check token=.") from None
        self.obs_horizon = int(info["obs_horizon"])
        self.obs_keys = list(info["obs_keys"])
        self.supports_prefix = bool(info["supports_prefix"])
        self.exec_horizon = int(info.get("exec_horizon", 1))

    def __call__(self, obs: dict[str, np.ndarray], prefix: np.ndarray | None = None) -> np.ndarray:
        arrays = {f"obs/{k}": v for k, v in obs.items()}
        if prefix is not None:
            arrays["prefix"] = np.asarray(prefix, np.float32)
        t0 = time.perf_counter()
        rep, out = self._request({"op": "infer"}, arrays, with_arrays=True)
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
            s.connect(self.endpoint)
            self._sock = s
        return self._sock

    def _request(self, header: dict, arrays=None, with_arrays: bool = False, timeout_s: float | None = None):
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        rid = next(self._ids)
        h = dict(header, id=rid)
        if self.token:
            h["token"] = self.token
        sock = self._socket()
        deadline = time.monotonic() + timeout_s
        try:
            sock.send_multipart(encode(h, arrays), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            # No live connection yet: wait for one within the timeout.
            if not sock.poll(max(1, int(timeout_s * 1000)), zmq.POLLOUT):
                self._drop_socket()
                raise ServerTimeout(f"no policy server at {self.endpoint}") from None
            sock.send_multipart(encode(h, arrays), copy=False)
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not sock.poll(left_ms, zmq.POLLIN):
                self._drop_socket()
                raise ServerTimeout(f"policy server at {self.endpoint} did not answer within {timeout_s:g} s")
            rep, out = decode(sock.recv_multipart())
            if rep.get("id") != rid:
                continue  # a late reply to an earlier, timed-out request
            if not rep.get("ok"):
                raise ServerError(str(rep.get("error", "unknown error")))
            return (rep, out) if with_arrays else rep

    def _drop_socket(self) -> None:
        self.close()
        self.reconnects += 1
