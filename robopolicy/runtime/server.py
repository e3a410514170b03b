"""Policy server: serves ``policy.sample`` over ZeroMQ (ROUTER socket) for a remote or local GPU.

Requests (see :mod:`robopolicy.runtime.wire`): ``op="info"`` -> horizons, keys, whether the
policy takes ``prefix_actions``; ``op="infer"`` with arrays ``obs/<key>`` ``(1, To, ...)`` and
optionally ``prefix`` ``(m, A)`` -> array ``actions`` ``(T, A)`` and ``infer_s``; ``op="ping"``.
Binds ``tcp://127.0.0.1:5555`` unless told otherwise. With a ``token`` every request must carry
it (compared in constant time); a wrong token gets an error reply and nothing runs.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time

import numpy as np
import zmq

from robopolicy.errors import ConfigError
from robopolicy.runtime.wire import WireError, decode, encode
from robopolicy.runtime.worker import LocalPredictor

log = logging.getLogger(__name__)

DEFAULT_BIND = "tcp://127.0.0.1:5555"


class PolicyServer:
    def __init__(self, policy, bind: str = DEFAULT_BIND, token: str | None = None, torch_threads: int | None = None,
                 context: zmq.Context | None = None):
        # A Policy (has .sample) is wrapped; anything else is taken as a ready predictor.
        self.predictor = LocalPredictor(policy, torch_threads=torch_threads) if hasattr(policy, "sample") else policy
        self.token = token or None
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            self._sock.bind(bind)
        except zmq.ZMQError as e:
            self._sock.close()
            raise ConfigError(f"The policy server cannot bind {bind} ({e}); pick a free address with bind=tcp://127.0.0.1:PORT.") from None
        self.endpoint = self._sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._stop = threading.Event()
        self.requests = 0
        self.rejected = 0

    def info(self) -> dict:
        p = self.predictor
        return {"obs_horizon": p.obs_horizon, "obs_keys": p.obs_keys, "supports_prefix": p.supports_prefix,
                "exec_horizon": getattr(p, "exec_horizon", 1)}

    def serve_forever(self, poll_ms: int = 100) -> None:
        """Answer requests until :meth:`stop` (or Ctrl-C)."""
        log.info("policy server listening on %s", self.endpoint)
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not dict(poller.poll(poll_ms)):
                    continue
                ident, *frames = self._sock.recv_multipart(copy=True)
                self._sock.send_multipart([ident, *self._handle(frames)], copy=False)
        finally:
            self._sock.close(0)

    def stop(self) -> None:
        self._stop.set()

    def _handle(self, frames: list[bytes]) -> list:
        try:
            header, arrays = decode(frames)
        except WireError as e:
            self.rejected += 1
            return encode({"ok": False, "error": f"bad request: {e}"})
        rid = header.get("id")
        if self.token is not None and not hmac.compare_digest(str(header.get("token", "")), self.token):
            self.rejected += 1
            return encode({"ok": False, "id": rid, "error": "wrong or missing token"})
        op = header.get("op")
        self.requests += 1
        if op == "ping":
            return encode({"ok": True, "id": rid})
        if op == "info":
            return encode({"ok": True, "id": rid, "info": self.info()})
        if op == "infer":
            obs = {k[4:]: np.array(a) for k, a in arrays.items() if k.startswith("obs/")}  # writable copies for torch
            prefix = arrays.get("prefix")
            t0 = time.perf_counter()
            try:
                actions = self.predictor(obs, None if prefix is None else np.array(prefix, np.float32))
            except Exception as e:  # noqa: BLE001 - reported to the client, server keeps serving
                log.exception("inference failed")
                return encode({"ok": False, "id": rid, "error": f"{type(e).__name__}: {e}"})
            return encode({"ok": True, "id": rid, "infer_s": time.perf_counter() - t0}, {"actions": actions})
        return encode({"ok": False, "id": rid, "error": f"unknown op {op!r}"})


def serve_in_thread(policy, bind: str = DEFAULT_BIND, token: str | None = None) -> tuple[PolicyServer, threading.Thread]:
    """Start a server on a daemon thread (tests, benchmarks); stop it with ``server.stop()``."""
    server = PolicyServer(policy, bind=bind, token=token)
    th = threading.Thread(target=server.serve_forever, name="policy-server", daemon=True)
    th.start()
    return server, th


class ServerProcess:
    """A policy server in a child process (``runner.inference=process``, tests, benchmarks).

    ``factory(**factory_kwargs)`` runs in the child and returns a Policy or a predictor; it must be
    importable by name (multiprocessing "spawn": only the factory's name and kwargs are pickled to
    start the child, nothing travels that way afterwards). ``bind`` may use port 0: the endpoint
    actually bound is sent back.
    """

    def __init__(self, factory, factory_kwargs: dict | None = None, bind: str = "tcp://127.0.0.1:0",
                 token: str | None = None, torch_threads: int | None = None, start_timeout_s: float = 120.0):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve_child, args=(factory, dict(factory_kwargs or {}), bind, token, torch_threads, child),
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


def _serve_child(factory, factory_kwargs, bind, token, torch_threads, conn) -> None:
    import signal as _signal

    _signal.signal(_signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
    try:
        server = PolicyServer(factory(**factory_kwargs), bind=bind, token=token, torch_threads=torch_threads)
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        conn.send((False, f"{type(e).__name__}: {e}"))
        return
    conn.send((True, server.endpoint))
    conn.close()
    server.serve_forever()
