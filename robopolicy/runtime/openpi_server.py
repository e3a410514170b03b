"""An endpoint speaking openpi's websocket policy protocol, so clients written for openpi
(``openpi_client.websocket_client_policy.WebsocketClientPolicy``) can drive our policies.

The protocol (openpi-client 0.1.2): the client connects (optionally with the header
``Authorization: Api-Key <key>``); the server sends one binary msgpack message, its metadata;
then each client message is a msgpack observation dict and the server answers each with a msgpack
dict holding ``"actions"``; a text message instead is an error (openpi's client raises it).

Here:

* metadata: the policy's description (``obs_keys``, ``obs_horizon``, ``goal_keys``,
  ``action_dim``, ``chunk_len``, ...) plus ``protocol`` and ``version``;
* an observation holds each of the policy's keys at the top level or nested (``{"images":
  {"cam": ...}}`` is the key ``images/cam``), either one step ``(*shape)`` (repeated to the
  policy's ``To`` steps, as at an episode start) or a ``(To, *shape)`` history; optionally
  ``"goal"`` {key: (*shape)}, ``"prefix"`` (m, A) and ``"episode"`` {"seed", "start"} (policy
  noise per episode, as in evaluation); other keys (openpi's ``"prompt"``) are ignored;
* reply: ``{"actions": (T, A) float32, "server_timing": {"infer_ms": .., "server_ms": ..}}``
  (the policy's own time, and receipt to reply); any error is a text
  message and the connection stays open.

Same hardening as the ZeroMQ server: the token is checked in constant time during the HTTP
handshake (nothing is decoded before), message size is capped by websockets (``max_size``) and by
the decoder, connections are capped, inference goes through the same fair bounded pool, every
failure is an error message, never a dead server.
"""

from __future__ import annotations

import hmac
import http
import logging
import threading
import time
from urllib.parse import urlsplit

import numpy as np

from robopolicy.errors import ConfigError
from robopolicy.runtime.openpi_wire import PROTOCOL, VERSION, flatten, pack, unpack
from robopolicy.runtime.pool import Busy, FairPool
from robopolicy.runtime.served import RequestError
from robopolicy.runtime.server import (
    DEFAULT_LIMITS,
    as_predictor,
    predictor_info,
    read_episode,
    run_predictor,
    warn_if_exposed,
)
from robopolicy.runtime.wire import WireError

log = logging.getLogger(__name__)


class OpenPIServer:
    """bind: ``ws://HOST:PORT`` (port 0: any free port; :attr:`endpoint` tells which)."""

    def __init__(self, policy, bind: str = "ws://127.0.0.1:8000", token: str | None = None, torch_threads: int | None = None,
                 max_message_bytes: int | None = None, workers: int | None = None, per_client: int | None = None,
                 max_queue: int | None = None, max_clients: int = 32, request_timeout_s: float = 60.0):
        from websockets.sync.server import serve

        lim = DEFAULT_LIMITS
        self.max_message_bytes = int(max_message_bytes or lim["max_message_bytes"])
        self.predictor = as_predictor(policy, torch_threads)
        self.info = predictor_info(self.predictor)
        self.metadata = {**self.info, "protocol": PROTOCOL, "version": VERSION}
        self.token = token or None
        self._auth = f"Api-Key {token}".encode() if token else None
        self.max_clients, self.request_timeout_s = int(max_clients), float(request_timeout_s)
        self.pool = FairPool(int(workers or lim["workers"]), int(per_client or lim["per_client"]),
                             int(max_queue or lim["max_queue"]), name="openpi-pool")
        self._lock = threading.Lock()
        self.clients = 0
        self.requests = self.failed = self.rejected = self.internal_errors = 0
        parts = urlsplit(bind)
        if parts.scheme != "ws" or not parts.hostname:
            raise ConfigError(f"openpi bind={bind} is not a ws://HOST:PORT address; write e.g. ws://127.0.0.1:8000.")
        try:
            self._server = serve(self._handle, parts.hostname, parts.port or 0, compression=None,
                                 max_size=self.max_message_bytes, process_request=self._check_request)
        except OSError as e:
            raise ConfigError(f"The openpi endpoint cannot bind {bind} ({e}); pick a free port.") from None
        host, port = self._server.socket.getsockname()[:2]
        self.endpoint = f"ws://{host}:{port}"
        self.exposed_without_token = warn_if_exposed(self.endpoint, self.token)

    # -- lifecycle ------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        log.info("openpi endpoint listening on %s", self.endpoint)
        try:
            self._server.serve_forever()
        finally:
            self.pool.close()

    def stop(self) -> None:
        self._server.shutdown()

    # -- handshake ------------------------------------------------------------------------------
    def _check_request(self, connection, request):
        """Before the websocket opens: token (bytes, constant time) and the connection cap."""
        try:
            if self._auth is not None:
                got = (request.headers.get("Authorization") or "").encode("utf-8", "surrogateescape")
                if not hmac.compare_digest(got, self._auth):
                    with self._lock:
                        self.rejected += 1
                    return connection.respond(http.HTTPStatus.UNAUTHORIZED, "wrong or missing api key\n")
            with self._lock:
                if self.clients >= self.max_clients:
                    self.rejected += 1
                    return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many clients\n")
            return None
        except Exception:  # one connection's trouble is not the server's
            log.exception("handshake check failed")
            return connection.respond(http.HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")

    # -- one connection -------------------------------------------------------------------------
    def _handle(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        with self._lock:
            self.clients += 1
        try:
            ws.send(pack(self.metadata))
            for message in ws:
                ws.send(self._respond(ws, message))
        except ConnectionClosed:
            pass
        except Exception:  # one connection's trouble is not the server's
            with self._lock:
                self.internal_errors += 1
            log.exception("openpi connection failed")
        finally:
            with self._lock:
                self.clients -= 1

    def _respond(self, ws, message) -> bytes | str:
        """One request -> reply bytes, or an error text (never raises)."""
        try:
            req = unpack(message, self.max_message_bytes)
            if not isinstance(req, dict):
                raise WireError("an observation must be a msgpack map")
            obs, goal, prefix = self._split(req)
            episode = read_episode(req.get("episode"))
            with self._lock:
                self.requests += 1
            t0 = time.perf_counter()
            fut = self.pool.submit(id(ws), lambda: _timed(run_predictor, self.predictor, obs, prefix, goal, episode, id(ws)))
            actions, infer_s = fut.result(timeout=self.request_timeout_s)
            # infer_ms: the policy alone (as the ZeroMQ server's infer_s); server_ms: receipt to reply
            return pack({"actions": np.asarray(actions, np.float32),
                         "server_timing": {"infer_ms": infer_s * 1000.0, "server_ms": (time.perf_counter() - t0) * 1000.0}})
        except (WireError, RequestError, Busy) as e:
            with self._lock:
                self.failed += 1
            return f"error: {e}"
        except Exception as e:  # policy failures and bugs become error texts
            with self._lock:
                self.internal_errors += 1
            log.exception("openpi request failed")
            return f"error: {type(e).__name__}: {str(e)[:300]}"

    def _split(self, req: dict):
        """openpi observation dict -> (obs {k: (1, To, ...)}, goal or None, prefix or None)."""
        keys = self.info["obs_keys"]
        to = int(self.info["obs_horizon"])
        shapes = self.info.get("obs_shapes", {})
        flat = flatten(req)
        obs = {}
        for k in keys:
            if k not in flat:
                raise RequestError(f"observation key {k!r} is missing; send {keys}")
            a = np.asarray(flat[k])
            if k in shapes and list(a.shape) == list(shapes[k]):
                a = np.repeat(a[None], to, axis=0)  # one step: as at an episode start
            obs[k] = a[None]
        goal = req.get("goal")
        if goal is not None and not isinstance(goal, dict):
            raise RequestError("'goal' must be a map {key: array}")
        prefix = req.get("prefix")
        if prefix is not None and not isinstance(prefix, np.ndarray):
            raise RequestError("'prefix' must be an array (m, A)")
        return obs, goal or None, prefix


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def serve_openpi_in_thread(policy, bind: str = "ws://127.0.0.1:0", token: str | None = None, **kwargs):
    """Start an openpi endpoint on a daemon thread (tests, benchmarks); stop with ``server.stop()``."""
    server = OpenPIServer(policy, bind=bind, token=token, **kwargs)
    th = threading.Thread(target=server.serve_forever, name="openpi-server", daemon=True)
    th.start()
    return server, th
