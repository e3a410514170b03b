"""Wire format of the policy server (version 2, documented in docs/WIRE.md).

One message is a ZeroMQ multipart message::

    frames = [TAG, token, header_json_utf8, buf_0, buf_1, ...]
    TAG    = b"robopolicy-wire/2"        (protocol name + version: checked first)
    token  = the shared secret as raw bytes (b"" when none; replies carry b"")
    header = {"v": 2, "op": "...", "id": 7, "arrays": [{"name", "dtype", "shape"}, ...], ...}

Never pickle. The receiver checks, in this order and before trusting anything: the frame count
and total size (against ``max_message_bytes``), the version tag, the token (as bytes, in constant
time with :func:`hmac.compare_digest`), and only then parses the JSON header and the array specs.
Array sizes are computed with Python's unbounded integers, so a huge or overflowing declared
shape is an error, never a wrapped-around number; dtypes come from a short allowlist of plain
little-endian numeric types; every buffer must have exactly the advertised size.

Only numpy and the standard library are imported here (the client must work without torch).
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

VERSION = 2
PROTOCOL = b"robopolicy-wire"
TAG = PROTOCOL + b"/" + str(VERSION).encode()
MAX_HEADER_BYTES = 1 << 16
MAX_ARRAYS = 64
MAX_DIMS = 8
MAX_NAME_CHARS = 128
# Plain numeric dtypes, little-endian or byte-sized, as numpy spells them in ``dtype.str``.
DTYPES = frozenset({"|b1", "|u1", "|i1", "<u2", "<i2", "<f2", "<u4", "<i4", "<f4", "<u8", "<i8", "<f8"})


class WireError(ValueError):
    """A malformed message; the text is sent back to the client in the error reply."""


class VersionError(WireError):
    """The message is not robopolicy wire version ``VERSION``."""


class AuthError(WireError):
    """Missing or wrong token."""


def encode(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None,
           token: bytes | str | int | None = None) -> list[bytes | memoryview]:
    """header (JSON-able) + arrays {name: ndarray} -> frames for ``socket.send_multipart``."""
    h = dict(header)
    h["v"] = VERSION
    frames: list[bytes | memoryview] = []
    specs = []
    for name, a in (arrays or {}).items():
        a = np.ascontiguousarray(a)
        if a.dtype.str not in DTYPES:
            a = _to_wire_dtype(name, a)
        specs.append({"name": str(name), "dtype": a.dtype.str, "shape": list(a.shape)})
        frames.append(memoryview(a).cast("B") if a.size else b"")
    h["arrays"] = specs
    # A token from the command line may arrive as a number (token=12345): its text is the secret.
    tok = token if isinstance(token, bytes) else (str(token).encode("utf-8") if token not in (None, "") else b"")
    return [TAG, tok, json.dumps(h).encode("utf-8"), *frames]


def _to_wire_dtype(name: str, a: np.ndarray) -> np.ndarray:
    """Big-endian numbers travel as little-endian; anything else (objects, strings, complex) is refused."""
    if a.dtype.kind in "biuf" and a.dtype.newbyteorder("<").str in DTYPES:
        return a.astype(a.dtype.newbyteorder("<"))
    raise WireError(f"array {name!r} has dtype {a.dtype}; only bool/int/uint/float arrays travel")


def check_envelope(frames: list, token: bytes | None, max_message_bytes: int) -> None:
    """Frame count, total size, version tag and token, before anything is parsed.

    token: the server's secret as bytes, or None (no token required).
    """
    if len(frames) < 3:
        raise WireError(f"a message has at least 3 frames (tag, token, header), got {len(frames)}")
    if len(frames) > 3 + MAX_ARRAYS:
        raise WireError(f"too many frames ({len(frames)}); at most {MAX_ARRAYS} arrays per message")
    total = sum(len(f) for f in frames)
    if total > max_message_bytes:
        raise WireError(f"message of {total} bytes exceeds the server's max_message_bytes={max_message_bytes}")
    tag = bytes(frames[0])
    if tag != TAG:
        if tag.startswith(PROTOCOL + b"/"):
            got = tag[len(PROTOCOL) + 1:][:16].decode("ascii", "replace")
            raise VersionError(f"wire version {got!r} is not supported; this server speaks version {VERSION}: "
                               "use a client of the same robopolicy release")
        raise VersionError(f"not a robopolicy wire message (expected the tag {TAG.decode()}); "
                           f"update the client to wire version {VERSION}")
    if token is not None and not hmac.compare_digest(bytes(frames[1]), token):
        raise AuthError("wrong or missing token")


def decode_header(frame) -> dict[str, Any]:
    """The JSON header frame -> dict (with "v" == VERSION and a list "arrays")."""
    if len(frame) > MAX_HEADER_BYTES:
        raise WireError(f"header of {len(frame)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(frame).decode("utf-8"))
    except Exception as e:  # noqa: BLE001 - bad UTF-8, bad JSON, nesting too deep: all the client's fault
        raise WireError(f"header is not UTF-8 JSON ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise WireError("header is not a JSON object")
    if header.get("v") != VERSION:
        raise VersionError(f"header version {header.get('v')!r} is not supported; this server speaks version {VERSION}")
    if not isinstance(header.get("arrays", []), list):
        raise WireError("header 'arrays' is not a list")
    return header


def array_spec(spec: Any, max_bytes: int) -> tuple[str, np.dtype, tuple[int, ...], int]:
    """One entry of header["arrays"] -> (name, dtype, shape, nbytes), nbytes exact (Python ints)."""
    if not isinstance(spec, dict):
        raise WireError("an array spec is not an object")
    name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        raise WireError(f"array name must be a string of 1-{MAX_NAME_CHARS} characters")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise WireError(f"array {name!r}: dtype {str(dtype)[:32]!r} not allowed (one of {sorted(DTYPES)})")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS:
        raise WireError(f"array {name!r}: shape must be a list of at most {MAX_DIMS} integers")
    if any(type(s) is not int or s < 0 for s in shape):  # type(...) is int: no bools, floats or strings
        raise WireError(f"array {name!r}: shape entries must be non-negative integers")
    dt = np.dtype(dtype)
    nbytes = dt.itemsize * math.prod(shape)  # Python ints: no overflow
    if nbytes > max_bytes:
        raise WireError(f"array {name!r}: declared size {nbytes} bytes exceeds max_message_bytes={max_bytes}")
    return name, dt, tuple(shape), nbytes


def decode_arrays(header: dict, buffers: list, max_message_bytes: int) -> dict[str, np.ndarray]:
    """header["arrays"] + buffer frames -> {name: read-only ndarray}."""
    specs = header.get("arrays", [])
    if len(specs) != len(buffers):
        raise WireError(f"header lists {len(specs)} arrays but {len(buffers)} buffers came")
    arrays: dict[str, np.ndarray] = {}
    for spec, buf in zip(specs, buffers):
        name, dt, shape, nbytes = array_spec(spec, max_message_bytes)
        if name in arrays:
            raise WireError(f"array {name!r} appears twice")
        if len(buf) != nbytes:
            raise WireError(f"array {name!r}: {len(buf)} bytes for shape {list(shape)} {dt.str} ({nbytes} expected)")
        arrays[name] = np.frombuffer(buf, dtype=dt).reshape(shape) if nbytes else np.zeros(shape, dt)
    return arrays


def decode(frames: list, token: bytes | None = None, max_message_bytes: int = 1 << 30) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """frames -> (header, {name: array}); raises WireError (VersionError, AuthError) on anything unexpected."""
    check_envelope(frames, token, max_message_bytes)
    header = decode_header(frames[2])
    return header, decode_arrays(header, frames[3:], max_message_bytes)


def reply_id(header: Mapping[str, Any] | None) -> int | str | None:
    """The request id to echo: an int or a short string, else None (never echo arbitrary JSON)."""
    rid = (header or {}).get("id")
    if (type(rid) is int and abs(rid) < 1 << 63) or (isinstance(rid, str) and len(rid) <= 64):
        return rid
    return None
