"""openpi's policy protocol: msgpack with numpy arrays, over a websocket (docs/WIRE.md, part 2).

The encoding of an array is openpi's (``openpi_client/msgpack_numpy.py``), so either side can be
openpi's own code::

    ndarray  -> {b"__ndarray__": True, b"data": raw bytes, b"dtype": "<f4", b"shape": [..]}
    np.generic -> {b"__npgeneric__": True, b"data": python scalar, b"dtype": "<f4"}

Written here rather than taken from a package: ``msgpack-numpy`` falls back to pickle for object
arrays and is barely maintained, and ``openpi-client`` pins numpy < 2, which this environment
cannot take. The decoder is stricter than both: dtypes from the wire allowlist only, shapes of
non-negative Python ints, the byte count exact, msgpack's own length limits on, never pickle.

Also the client side for our runner (:class:`OpenPIPredictor`, ``robopolicy-deploy server=ws://``);
it needs numpy, msgpack and websockets only.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import msgpack
import numpy as np

from robopolicy.runtime.wire import DTYPES, MAX_DIMS, WireError

log = logging.getLogger(__name__)

PROTOCOL = "openpi-websocket"
VERSION = 1  # of our metadata fields; openpi's protocol itself carries no version


def _pack_default(obj):
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        if a.dtype.str not in DTYPES:
            raise WireError(f"array dtype {a.dtype} cannot travel; use bool/int/uint/float")
        return {b"__ndarray__": True, b"data": a.tobytes(), b"dtype": a.dtype.str, b"shape": list(a.shape)}
    if isinstance(obj, np.generic):
        if obj.dtype.str not in DTYPES:
            raise WireError(f"scalar dtype {obj.dtype} cannot travel")
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot pack {type(obj).__name__}")


def pack(obj: Any) -> bytes:
    """dicts / lists / numbers / strings / numpy arrays -> msgpack bytes."""
    return msgpack.packb(obj, default=_pack_default, use_bin_type=True)


def _dtype(d) -> np.dtype:
    d = d.decode("ascii", "replace") if isinstance(d, bytes) else d
    if not isinstance(d, str) or d not in DTYPES:
        raise WireError(f"dtype {str(d)[:32]!r} not allowed (one of {sorted(DTYPES)})")
    return np.dtype(d)


def _unpack_hook(obj: dict):
    if b"__ndarray__" in obj:
        dt = _dtype(obj.get(b"dtype"))
        shape, data = obj.get(b"shape"), obj.get(b"data")
        if not isinstance(shape, (list, tuple)) or len(shape) > MAX_DIMS or any(type(s) is not int or s < 0 for s in shape):
            raise WireError(f"array shape must be a list of at most {MAX_DIMS} non-negative integers")
        if not isinstance(data, bytes):
            raise WireError("array data must be bytes")
        nbytes = dt.itemsize * math.prod(shape)  # Python ints: no overflow
        if len(data) != nbytes:
            raise WireError(f"array data has {len(data)} bytes for shape {list(shape)} {dt.str} ({nbytes} expected)")
        return np.frombuffer(data, dtype=dt).reshape(tuple(shape)) if nbytes else np.zeros(tuple(shape), dt)
    if b"__npgeneric__" in obj:
        dt, v = _dtype(obj.get(b"dtype")), obj.get(b"data")
        if type(v) not in (bool, int, float):
            raise WireError("scalar data must be a number")
        try:
            return dt.type(v)
        except (OverflowError, ValueError) as e:
            raise WireError(f"scalar does not fit {dt}: {e}") from None
    return obj


def unpack(data: bytes, max_bytes: int) -> Any:
    """msgpack bytes -> object (arrays rebuilt); WireError on anything malformed or over ``max_bytes``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError("expected a binary websocket message (msgpack)")
    if len(data) > max_bytes:
        raise WireError(f"message of {len(data)} bytes exceeds max_message_bytes={max_bytes}")
    try:
        return msgpack.unpackb(bytes(data), object_hook=_unpack_hook, raw=False, max_bin_len=max_bytes,
                               max_str_len=1 << 20, max_array_len=1 << 16, max_map_len=1 << 12)
    except WireError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated data, extra bytes, bad keys, nesting: the sender's fault
        raise WireError(f"not valid msgpack ({type(e).__name__}: {str(e)[:120]})") from None


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts (openpi sends e.g. {"images": {"cam": ...}}) -> {"images/cam": ...}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and k != "goal":
            out.update(flatten(v, name + "/"))
        else:
            out[name] = v
    return out


class OpenPIPredictor:
    """Runner predictor talking to an openpi-protocol endpoint (ours or any that returns "actions").

    Sends each key's ``(To, ...)`` history (the batch row), the goal under ``"goal"`` and the RTC
    prefix under ``"prefix"``. A reply that does not come within ``timeout_s`` raises
    :class:`~robopolicy.runtime.client.ServerTimeout` and the connection is opened afresh at the
    next request (late replies cannot be confused with new ones).
    """

    def __init__(self, uri: str, token: str | None = None, timeout_s: float = 1.0, connect_timeout_s: float = 10.0,
                 goal=None, max_reply_bytes: int = 1 << 28):
        from robopolicy.runtime.client import read_goal

        self.uri, self.token, self.timeout_s = uri, token or None, float(timeout_s)
        self.connect_timeout_s, self.max_reply_bytes = float(connect_timeout_s), int(max_reply_bytes)
        self._ws = None
        self.reconnects = 0
        self.round_trips: list[tuple[float, float]] = []  # (round trip s, server inference s)
        self.metadata = self._connect(self.connect_timeout_s)
        self.obs_horizon = int(self.metadata.get("obs_horizon", 1))
        self.obs_keys = list(self.metadata.get("obs_keys", []))
        self.goal_keys = list(self.metadata.get("goal_keys", []))
        self.supports_prefix = bool(self.metadata.get("supports_prefix", False))
        self.exec_horizon = int(self.metadata.get("exec_horizon", 1))
        self.goal = read_goal(goal)
        self.episode: dict | None = None  # {"seed", "start"} sent with each request (see new_episode)

    def new_episode(self, seed: int | None) -> None:
        """As :meth:`robopolicy.runtime.client.PolicyClient.new_episode` (the message key ``"episode"``)."""
        self.episode = None if seed is None else {"seed": int(seed), "start": True}

    def _connect(self, timeout_s: float) -> dict:
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        from robopolicy.errors import ConfigError

        headers = {"Authorization": f"Api-Key {self.token}"} if self.token else None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ws = _connect_direct(connect, self.uri, compression=None, max_size=self.max_reply_bytes,
                                     additional_headers=headers,
                                     open_timeout=max(0.1, min(self.timeout_s * 5, deadline - time.monotonic())))
                meta = unpack(ws.recv(timeout=max(0.1, deadline - time.monotonic())), self.max_reply_bytes)
                self._ws = ws
                return meta if isinstance(meta, dict) else {}
            except InvalidStatus as e:
                raise ConfigError(f"The policy server at {self.uri} refused the connection (HTTP "
                                  f"{e.response.status_code}); check token=.") from None
            except (OSError, TimeoutError, WireError) as e:
                if time.monotonic() >= deadline:
                    raise ConfigError(f"No openpi-protocol policy server answered at {self.uri} within {timeout_s:g} s "
                                      f"({type(e).__name__}); start robopolicy-policy-server openpi=true or fix server=.") from None
                time.sleep(0.05)

    def __call__(self, obs: dict[str, np.ndarray], prefix: np.ndarray | None = None) -> np.ndarray:
        from websockets.exceptions import ConnectionClosed

        from robopolicy.runtime.client import ServerError, ServerTimeout

        msg: dict[str, Any] = {k: np.asarray(v)[0] for k, v in obs.items()}  # (1, To, ...) -> (To, ...)
        if self.goal:
            msg["goal"] = self.goal
        if prefix is not None:
            msg["prefix"] = np.asarray(prefix, np.float32)
        episode = self.episode
        if episode is not None:
            msg["episode"] = dict(episode)
        t0 = time.perf_counter()
        try:
            if self._ws is None:
                self.reconnects += 1
                self._connect(self.timeout_s)
            self._ws.send(pack(msg))
            rep = self._ws.recv(timeout=self.timeout_s)
        except (TimeoutError, ConnectionClosed, OSError) as e:
            self.close()
            raise ServerTimeout(f"policy server at {self.uri} did not answer within {self.timeout_s:g} s ({type(e).__name__})") from None
        except Exception:
            self.close()
            raise
        if isinstance(rep, str):
            raise ServerError(rep)
        out = unpack(rep, self.max_reply_bytes)
        if not isinstance(out, dict) or "actions" not in out:
            raise ServerError("the reply has no 'actions'")
        if episode is not None:
            episode["start"] = False  # answered: the server has begun the episode's stream
        infer_ms = (out.get("server_timing") or {}).get("infer_ms", 0.0)
        self.round_trips.append((time.perf_counter() - t0, float(infer_ms) / 1000.0))
        return np.array(out["actions"], dtype=np.float32)

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception as e:  # noqa: BLE001 - closing is best effort
                log.debug("closing the websocket failed: %s", e)
            self._ws = None


def _connect_direct(connect, uri: str, **kwargs):
    """websockets >= 17.1 wants ``legacy=True`` to hand out a connection outside a ``with`` block."""
    try:
        return connect(uri, legacy=True, **kwargs)
    except TypeError:
        return connect(uri, **kwargs)
