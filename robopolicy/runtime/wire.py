"""Wire format of the policy server: a JSON header frame plus one raw buffer frame per array.

Never pickle: the header lists every array's name, dtype and shape; the receiver rebuilds arrays
with ``np.frombuffer`` and accepts only plain numeric dtypes (bool, int, uint, float), checking that
each buffer has exactly the advertised size.

    frames = [header_json_utf8, buf_0, buf_1, ...]
    header = {"v": 1, "op": "...", "id": 7, "token": "...", "arrays": [{"name", "dtype", "shape"}], ...}
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

VERSION = 1
MAX_HEADER_BYTES = 1 << 16
_ALLOWED_KINDS = set("biuf")


class WireError(ValueError):
    """A malformed message (bad header, dtype or size)."""


def encode(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> list[bytes | memoryview]:
    """header (JSON-able) + arrays -> frames for ``socket.send_multipart``."""
    arrays = arrays or {}
    h = dict(header)
    h["v"] = VERSION
    frames: list[bytes | memoryview] = []
    specs = []
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        if a.dtype.kind not in _ALLOWED_KINDS:
            raise WireError(f"array {name!r} has dtype {a.dtype}, only bool/int/uint/float travel")
        specs.append({"name": str(name), "dtype": a.dtype.str, "shape": list(a.shape)})
        frames.append(memoryview(a).cast("B") if a.size else b"")
    h["arrays"] = specs
    return [json.dumps(h).encode("utf-8"), *frames]


def decode(frames: list[bytes]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """frames -> (header, {name: array}); raises WireError on anything unexpected."""
    if not frames or len(frames[0]) > MAX_HEADER_BYTES:
        raise WireError("missing or oversized header")
    try:
        header = json.loads(bytes(frames[0]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError(f"header is not JSON: {e}") from None
    if not isinstance(header, dict) or header.get("v") != VERSION:
        raise WireError(f"unsupported message version {header.get('v') if isinstance(header, dict) else None!r}")
    specs = header.get("arrays", [])
    if not isinstance(specs, list) or len(specs) != len(frames) - 1:
        raise WireError("array list does not match the frames")
    arrays = {}
    for spec, buf in zip(specs, frames[1:]):
        try:
            dt = np.dtype(str(spec["dtype"]))
            shape = tuple(int(s) for s in spec["shape"])
            name = str(spec["name"])
        except (KeyError, TypeError, ValueError) as e:
            raise WireError(f"bad array spec {spec!r}: {e}") from None
        if dt.kind not in _ALLOWED_KINDS or dt.hasobject or any(s < 0 for s in shape):
            raise WireError(f"array {name!r}: dtype {dt} or shape {shape} not allowed")
        n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if len(buf) != n:
            raise WireError(f"array {name!r}: {len(buf)} bytes for shape {shape} {dt} ({n} expected)")
        arrays[name] = np.frombuffer(buf, dtype=dt).reshape(shape) if n else np.zeros(shape, dt)
    return header, arrays
