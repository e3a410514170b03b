"""Policy server: serves a policy over ZeroMQ (ROUTER socket) for a remote or local GPU.

Requests and replies follow :mod:`robopolicy.runtime.wire` (docs/WIRE.md): ``op="info"`` -> what
the policy needs and returns; ``op="infer"`` with arrays ``obs/<key>`` ``(1, To, ...)``, optionally
``goal/<key>`` (goal-conditioned policies) and ``prefix`` ``(m, A)``, and the header field
``episode`` ``{"seed", "start"}`` (policy noise per episode, as in evaluation) -> array ``actions``
``(T, A)`` and ``infer_s``; ``op="ping"``.

Hardening (nothing a client sends can stop the server):

* ZeroMQ drops any frame above ``max_message_bytes`` itself (``zmq.MAXMSGSIZE``); the whole
  message is checked against the same limit, then the version tag, then the token (bytes,
  constant time), and only then is the header parsed: an unauthenticated message never reaches
  the JSON or array decoders;
* every failure while handling a request, expected or not, becomes an error reply with a
  ``code``; the serve loop itself only ends on :meth:`stop`;
* inference runs on a :class:`~robopolicy.runtime.pool.FairPool`: clients are served in turn,
  each with a bounded number of requests in progress, so a flooding or slow client delays only
  itself; replies to a client that does not read them are dropped at ZeroMQ's high-water mark;
* binding a non-loopback address without a token logs a warning.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from urllib.parse import urlsplit

import numpy as np
import zmq

from robopolicy.errors import ConfigError
from robopolicy.runtime.pool import Busy, FairPool
from robopolicy.runtime.served import RequestError, ServedPolicy, check_episode_seed
from robopolicy.runtime.wire import (
    AuthError,
    VersionError,
    WireError,
    check_envelope,
    decode_arrays,
    decode_header,
    encode,
    reply_id,
)

log = logging.getLogger(__name__)

DEFAULT_BIND = "tcp://127.0.0.1:5555"
# Used when PolicyServer is built from Python; the command reads conf/policy_server.yaml.
DEFAULT_LIMITS = {"max_message_bytes": 16 << 20, "workers": 2, "per_client": 2, "max_queue": 64}
_MAX_ERROR_CHARS = 500
_NO_STREAM = object()  # requests without an episode: the process's RNG


def is_loopback(endpoint: str) -> bool:
    """True for endpoints only this machine can reach (loopback tcp/ws, ipc, inproc)."""
    scheme = endpoint.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return True
    host = (urlsplit(endpoint).hostname or "") if "://" in endpoint else endpoint
    return host == "localhost" or host == "::1" or host.startswith("127.")


def warn_if_exposed(endpoint: str, token) -> bool:
    """Log a warning (and return True) when ``endpoint`` is reachable from other machines without a token."""
    if token or is_loopback(endpoint):
        return False
    log.warning("the policy server listens on %s, which other machines can reach, without a token: anyone on the "
                "network can drive this policy; set token=<secret> (and a firewall) before exposing it", endpoint)
    return True


def as_predictor(policy, torch_threads: int | None = None):
    """A Policy becomes a :class:`ServedPolicy`; anything else is taken as a ready predictor."""
    return ServedPolicy(policy, torch_threads=torch_threads) if hasattr(policy, "sample") else policy


def predictor_info(p) -> dict:
    if hasattr(p, "describe"):
        return p.describe()
    return {"obs_horizon": int(p.obs_horizon), "obs_keys": list(p.obs_keys), "goal_keys": list(getattr(p, "goal_keys", [])),
            "supports_prefix": bool(getattr(p, "supports_prefix", False)), "exec_horizon": int(getattr(p, "exec_horizon", 1))}


def read_episode(episode) -> tuple[int, bool] | None:
    """A request's ``episode`` field ``{"seed": int, "start": bool}`` -> (seed, start); absent: None."""
    if episode is None:
        return None
    if not isinstance(episode, dict) or not isinstance(episode.get("start", False), (bool, np.bool_)):
        raise RequestError("'episode' must be a map {\"seed\": integer, \"start\": true|false}")
    return check_episode_seed(episode.get("seed")), bool(episode.get("start", False))


def run_predictor(p, obs: dict, prefix, goal, episode: tuple[int, bool] | None = None, stream=None) -> np.ndarray:
    """Call a ServedPolicy (takes goal and the client's episode) or a plain predictor ``(obs, prefix)``;
    -> (T, A) float32. ``episode`` (seed, start): the request's episode; a start, or a stream the
    server does not know (restarted mid-episode), begins that episode's RNG stream for ``stream``."""
    if isinstance(p, ServedPolicy):
        if episode is not None and (episode[1] or stream not in p.streams):
            p.new_episode(episode[0], stream)
        return p(obs, prefix, goal, stream=stream if episode is not None else _NO_STREAM)
    if goal and not getattr(p, "goal_keys", None):
        raise RequestError("this policy is not goal-conditioned; send no goal")
    obs = {k: np.array(v) for k, v in obs.items()}  # writable copies
    out = p(obs, prefix) if not goal else p(obs, prefix, goal)
    return np.asarray(out, dtype=np.float32)


def error_frames(rid, code: str, message: str) -> list:
    return encode({"ok": False, "id": rid, "code": code, "error": message[:_MAX_ERROR_CHARS]})


class PolicyServer:
    def __init__(self, policy, bind: str = DEFAULT_BIND, token: str | None = None, torch_threads: int | None = None,
                 context: zmq.Context | None = None, max_message_bytes: int | None = None, workers: int | None = None,
                 per_client: int | None = None, max_queue: int | None = None):
        lim = DEFAULT_LIMITS
        self.max_message_bytes = int(max_message_bytes or lim["max_message_bytes"])
        self.predictor = as_predictor(policy, torch_threads)
        self.token = token or None
        self._token_bytes = str(token).encode("utf-8") if token else None
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)  # ZeroMQ drops bigger frames itself
        self._sock.setsockopt(zmq.RCVHWM, 256)
        self._sock.setsockopt(zmq.SNDHWM, 256)
        try:
            self._sock.bind(bind)
        except zmq.ZMQError as e:
            self._sock.close()
            raise ConfigError(f"The policy server cannot bind {bind} ({e}); pick a free address with bind=tcp://127.0.0.1:PORT.") from None
        self.endpoint = self._sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.exposed_without_token = warn_if_exposed(self.endpoint, self.token)
        self.pool = FairPool(int(workers or lim["workers"]), int(per_client or lim["per_client"]), int(max_queue or lim["max_queue"]))
        self._info = predictor_info(self.predictor)
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self.requests = 0  # requests that passed the envelope and token checks
        self.rejected = 0  # malformed, wrong version, wrong token
        self.failed = 0  # error replies to well-formed requests (bad fit, policy error, busy)
        self.internal_errors = 0  # unexpected exceptions (bugs), answered and survived
        self.dropped_replies = 0

    def info(self) -> dict:
        return dict(self._info)

    # -- loop -----------------------------------------------------------------------------------
    def serve_forever(self, poll_ms: int = 100) -> None:
        """Answer requests until :meth:`stop` (or Ctrl-C)."""
        log.info("policy server listening on %s", self.endpoint)
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                try:
                    events = dict(poller.poll(poll_ms))
                    if self._sock in events:
                        self._receive_some()
                    self._drain_wake()
                    self._send_finished()
                except zmq.ZMQError as e:
                    if self._stop.is_set():
                        break
                    log.error("ZeroMQ error in the serve loop (continuing): %s", e)
                except Exception:  # the loop must survive anything
                    self.internal_errors += 1
                    log.exception("unexpected error in the serve loop (continuing)")
        finally:
            self.pool.close()
            self._sock.close(0)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def stop(self) -> None:
        self._stop.set()

    def _receive_some(self, max_messages: int = 64) -> None:
        for _ in range(max_messages):
            try:
                msg = self._sock.recv_multipart(flags=zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            ident, frames = msg[0], msg[1:]
            reply = self._handle(ident, frames)
            if reply is not None:
                self._send(ident, reply)

    def _send(self, ident: bytes, frames: list) -> None:
        try:
            self._sock.send_multipart([ident, *frames], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.dropped_replies += 1

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _send_finished(self) -> None:
        while True:
            try:
                ident, frames, failed = self._outbox.get_nowait()
            except queue.Empty:
                return
            self.failed += failed
            self._send(ident, frames)

    # -- one request ----------------------------------------------------------------------------
    def _handle(self, ident: bytes, frames: list) -> list | None:
        """Frames of the reply, or None when the reply comes later from the pool."""
        rid = None
        try:
            check_envelope(frames, self._token_bytes, self.max_message_bytes)
            header = decode_header(frames[2])
            rid = reply_id(header)
            self.requests += 1
            op = header.get("op")
            if op == "ping":
                return encode({"ok": True, "id": rid})
            if op == "info":
                return encode({"ok": True, "id": rid, "info": self._info})
            if op != "infer":
                self.failed += 1
                return error_frames(rid, "bad_request", f"unknown op {str(op)[:40]!r}; use ping, info or infer")
            arrays = decode_arrays(header, frames[3:], self.max_message_bytes)
            obs, goal, prefix = split_arrays(arrays)
            episode = read_episode(header.get("episode"))
            t_recv = time.perf_counter()
            fut = self.pool.submit(ident, lambda: self._infer(obs, prefix, goal, episode, ident))
            fut.add_done_callback(lambda f: self._finished(ident, rid, f, t_recv))
            return None
        except AuthError as e:
            self.rejected += 1
            return error_frames(None, "auth", str(e))
        except VersionError as e:
            self.rejected += 1
            return error_frames(rid, "version", str(e))
        except WireError as e:
            self.rejected += 1
            return error_frames(rid, "bad_request", f"bad request: {e}")
        except RequestError as e:
            self.failed += 1
            return error_frames(rid, "request", str(e))
        except Busy as e:
            self.failed += 1
            return error_frames(rid, "busy", str(e))
        except Exception as e:  # a bug must not take the server down
            self.internal_errors += 1
            log.exception("unexpected error handling a request")
            return error_frames(rid, "internal", f"internal server error ({type(e).__name__})")

    def _infer(self, obs, prefix, goal, episode=None, stream=None):
        t0 = time.perf_counter()
        actions = run_predictor(self.predictor, obs, prefix, goal, episode, stream)
        if actions.ndim != 2:
            raise RequestError(f"the policy returned shape {list(actions.shape)}, expected [T, A]")
        return actions, time.perf_counter() - t0

    def _finished(self, ident: bytes, rid, fut, t_recv: float) -> None:
        """Pool thread: turn the result into reply frames and wake the loop (never raises)."""
        failed = 1
        try:
            if fut.cancelled():
                frames = error_frames(rid, "busy", "the server shut down before this request ran")
            elif fut.exception() is not None:
                e = fut.exception()
                if isinstance(e, RequestError):
                    frames = error_frames(rid, "request", str(e))
                else:
                    log.error("inference failed: %s: %s", type(e).__name__, e, exc_info=e)
                    frames = error_frames(rid, "policy", f"{type(e).__name__}: {e}")
            else:
                actions, infer_s = fut.result()
                frames = encode({"ok": True, "id": rid, "infer_s": infer_s, "server_s": time.perf_counter() - t_recv},
                                {"actions": actions})
                failed = 0
        except Exception as e:  # a bug must not take the server down
            log.exception("could not build a reply")
            frames = error_frames(rid, "internal", f"internal server error ({type(e).__name__})")
        self._outbox.put((ident, frames, failed))
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the loop drains the outbox at its next poll anyway


def split_arrays(arrays: dict) -> tuple[dict, dict | None, np.ndarray | None]:
    """{"obs/k": ..., "goal/k": ..., "prefix": ...} -> (obs, goal or None, prefix or None)."""
    obs, goal, prefix = {}, {}, None
    for name, a in arrays.items():
        if name.startswith("obs/"):
            obs[name[4:]] = a
        elif name.startswith("goal/"):
            goal[name[5:]] = a
        elif name == "prefix":
            prefix = a
        else:
            raise RequestError(f"unknown array {name[:40]!r}; send obs/<key>, goal/<key> and prefix only")
    return obs, goal or None, prefix


def serve_in_thread(policy, bind: str = DEFAULT_BIND, token: str | None = None, **kwargs) -> tuple[PolicyServer, threading.Thread]:
    """Start a server on a daemon thread (tests, benchmarks); stop it with ``server.stop()``."""
    server = PolicyServer(policy, bind=bind, token=token, **kwargs)
    th = threading.Thread(target=server.serve_forever, name="policy-server", daemon=True)
    th.start()
    return server, th


class ServerProcess:
    """A policy server in a child process (``runner.inference=process``, tests, benchmarks).

    ``factory(**factory_kwargs)`` runs in the child and returns a Policy or a predictor; it must be
    importable by name (multiprocessing "spawn": only the factory's name and kwargs are pickled to
    start the child, nothing travels that way afterwards). ``bind`` may use port 0: the endpoint
    actually bound is sent back. ``server_kwargs`` go to :class:`PolicyServer`, or to
    :class:`~robopolicy.runtime.openpi_server.OpenPIServer` with ``openpi=True`` (bind ``ws://...``).
    """

    def __init__(self, factory, factory_kwargs: dict | None = None, bind: str = "tcp://127.0.0.1:0",
                 token: str | None = None, torch_threads: int | None = None, start_timeout_s: float = 120.0,
                 server_kwargs: dict | None = None, openpi: bool = False):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve_child, args=(factory, dict(factory_kwargs or {}), bind, token, torch_threads,
                                                              dict(server_kwargs or {}), openpi, child),
                                   daemon=True, name="policy-server")
        self.process.start()
        child.close()
        if not parent.poll(start_timeout_s):
            self.kill()
            raise ConfigError(f"The policy server process did not start within {start_timeout_s:g} s; check its log.")
        ok, msg = parent.recv()
        if not ok:
            self.kill()
            raise ConfigError(f"The policy server process failed to start: {msg}")
        self.endpoint: str = msg

    def kill(self) -> None:
        """SIGKILL (a crash, as far as clients can tell)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(5)


def _serve_child(factory, factory_kwargs, bind, token, torch_threads, server_kwargs, openpi, conn) -> None:
    import signal as _signal

    _signal.signal(_signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
    try:
        if openpi:
            from robopolicy.runtime.openpi_server import OpenPIServer

            server = OpenPIServer(factory(**factory_kwargs), bind=bind, token=token, torch_threads=torch_threads, **server_kwargs)
        else:
            server = PolicyServer(factory(**factory_kwargs), bind=bind, token=token, torch_threads=torch_threads, **server_kwargs)
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        conn.send((False, f"{type(e).__name__}: {e}"))
        return
    conn.send((True, server.endpoint))
    conn.close()
    server.serve_forever()
