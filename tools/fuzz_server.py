"""Fuzz the policy server with malformed messages. Loopback only, seeded, bounded.

    python tools/fuzz_server.py                         # 2000 cases or 120 s, seed 0
    python tools/fuzz_server.py --cases 500 --seed 3 --seconds 30
    python tools/fuzz_server.py --endpoint openpi        # the openpi websocket endpoint

Starts a server (a child process serving an untrained BESO on --task, or with --policy fake
robopolicy.runtime.fakes.GoToGoal; token "fuzz-token") on 127.0.0.1, then sends malformed tags, tokens, headers, shapes, dtypes, sizes and ops, plus
random mutations of a good request. Meanwhile a second client sends good requests with a known
answer. Prints: cases tried / clean errors / accepted / no reply (dropped by ZeroMQ's size limit)
/ crashes / data lost, where a crash is the server no longer answering a good request and data
lost is a good request that got no correct answer.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robopolicy.runtime.wire import TAG, decode, encode

BAD_DTYPES = ["O", "|O", "|V8", "<c8", ">f4", "<U10", "(2,)f4", "|S4", "M8[s]", "", "f4, i4", 7, None, ["<f4"], "<f16"]
BAD_SHAPES = [[-1, 2], [1.5, 2], [True, 2], ["2", 2], [2 ** 64], [2 ** 70, 2 ** 70], [2 ** 31] * 3, [1] * 40, "12", None,
              {"a": 1}, [0, 2 ** 63], [10 ** 30]]


def good_obs(info: dict) -> dict[str, np.ndarray]:
    """A valid observation for the served policy, from its ``info`` (key shapes default to (2,))."""
    shapes = info.get("obs_shapes", {})
    return {f"obs/{k}": np.zeros((1, info["obs_horizon"], *shapes.get(k, [2])), np.float32) for k in info["obs_keys"]}


def good_message(obs: dict, token: bytes, rid: int) -> list:
    return encode({"op": "infer", "id": rid}, obs, token=token)


def cases(rng: random.Random, token: bytes, max_bytes: int, obs: dict):
    """Yield (category, frames) forever; ``obs``: a valid observation (its first key is mangled)."""
    hdr = lambda **h: json.dumps({"v": 2, "op": "infer", "id": 1, **h}).encode()
    name, first = next(iter(obs.items()))
    buf = first.tobytes()
    spec = {"name": name, "dtype": "<f4", "shape": list(first.shape)}
    shape1 = [*first.shape[:-1], first.shape[-1] + 1]
    fixed = [
        ("tag", [b"", token, hdr(arrays=[spec]), buf]),
        ("tag", [b"robopolicy-wire/1", token, hdr(arrays=[spec]), buf]),
        ("tag", [b"robopolicy-wire/99999999999999999999", token, hdr(arrays=[spec]), buf]),
        ("tag", [json.dumps({"v": 1, "op": "info"}).encode()]),
        ("tag", [TAG]), ("tag", [TAG, token]), ("tag", []),
        ("token", [TAG, b"", hdr(arrays=[spec]), buf]),
        ("token", [TAG, "tökén-\u2603".encode(), hdr(arrays=[spec]), buf]),
        ("token", [TAG, b"\xff\xfe\x00" * 50, b"\xff not json", buf]),
        ("token", [TAG, token + b"x", hdr(arrays=[spec]), buf]),
        ("token", [TAG, token[:-1], hdr(arrays=[spec]), buf]),
        ("header", [TAG, token, b"\xff\xfe", buf]),
        ("header", [TAG, token, b"[1, 2]", buf]),
        ("header", [TAG, token, b"[" * 100000 + b"]" * 100000]),
        ("header", [TAG, token, b"{" * 5000]),
        ("header", [TAG, token, json.dumps({"v": "2", "op": "info"}).encode()]),
        ("header", [TAG, token, json.dumps({"op": "info"}).encode()]),
        ("header", [TAG, token, hdr(arrays="obs")]),
        ("header", [TAG, token, hdr(arrays=[spec], id={"x": [1] * 100})]),
        ("header", [TAG, token, b" " * (1 << 17)]),
        ("header", [TAG, token, json.dumps({"v": 2, "op": "x" * 10000}).encode()]),
        ("op", [TAG, token, json.dumps({"v": 2}).encode()]),
        ("op", [TAG, token, json.dumps({"v": 2, "op": ["infer"]}).encode()]),
        ("op", [TAG, token, hdr(arrays=[dict(spec, name="evil")]), buf]),
        ("op", [TAG, token, hdr(arrays=[dict(spec, name="obs/other")]), buf]),
        ("op", [TAG, token, hdr(arrays=[spec, spec]), buf, buf]),
        ("op", [TAG, token, hdr(arrays=[dict(spec, dtype="<f8")]), np.zeros(first.shape).tobytes()]),
        ("op", [TAG, token, hdr(arrays=[dict(spec, shape=shape1)]), np.zeros(shape1, np.float32).tobytes()]),
        ("op", [TAG, token, hdr(arrays=[dict(spec, shape=[0])]), b""]),
        ("op", [TAG, token, hdr(arrays=[spec]), np.full(first.shape, np.nan, np.float32).tobytes()]),
        ("op", [TAG, token, hdr(arrays=[spec, {"name": "prefix", "dtype": "<f4", "shape": [3, 7]}]), buf,
                np.zeros((3, 7), np.float32).tobytes()]),
        ("size", [TAG, token, hdr(arrays=[spec]), buf[:-1]]),
        ("size", [TAG, token, hdr(arrays=[spec]), buf + b"\0"]),
        ("size", [TAG, token, hdr(arrays=[spec])]),
        ("size", [TAG, token, hdr(arrays=[]), buf]),
        ("size", [TAG, token, hdr(arrays=[spec] * 70), *[buf] * 70]),
        ("size", [TAG, token, hdr(arrays=[dict(spec, shape=[max_bytes])]), b"\0" * 16]),
        ("size", [TAG, token, hdr(arrays=[spec]), b"\0" * (max_bytes + 1)]),  # above MAXMSGSIZE: ZeroMQ drops it
        ("size", [TAG, token, hdr(arrays=[dict(spec, shape=[max_bytes // 8])] * 2), b"\0" * (max_bytes // 2),
                  b"\0" * (max_bytes // 2)]),
    ]
    fixed += [("dtype", [TAG, token, hdr(arrays=[dict(spec, dtype=d)]), buf]) for d in BAD_DTYPES]
    fixed += [("shape", [TAG, token, hdr(arrays=[dict(spec, shape=s)]), buf]) for s in BAD_SHAPES]
    yield from fixed
    good = [bytes(f) for f in good_message(obs, token, 1)]
    while True:  # random mutations of a good message
        frames = list(good)
        kind = rng.choice(["flip", "truncate", "extend", "drop", "dup", "swap", "header"])
        i = rng.randrange(len(frames))
        f = bytearray(frames[i])
        if kind == "flip" and f:
            for _ in range(rng.randint(1, 4)):
                f[rng.randrange(len(f))] = rng.randrange(256)
            frames[i] = bytes(f)
        elif kind == "truncate":
            frames[i] = bytes(f[: rng.randrange(len(f) + 1)])
        elif kind == "extend":
            frames[i] = bytes(f) + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif kind == "drop":
            del frames[i]
        elif kind == "dup":
            frames.insert(i, frames[i])
        elif kind == "swap" and len(frames) > 1:
            j = rng.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
        else:
            h = json.loads(frames[2])
            key = rng.choice(["v", "op", "id", "arrays"])
            h[key] = rng.choice([None, -1, 2 ** 80, "", "x" * rng.randint(1, 300), [], {}, 1.5, True, [[[]]]])
            frames[2] = json.dumps(h).encode()
        yield f"mutate-{kind}", frames


def fuzz(endpoint: str, token: str, n_cases: int, seed: int, seconds: float, max_bytes: int,
         reply_timeout_s: float = 2.0) -> dict:
    """Run up to ``n_cases`` (or ``seconds``) cases against ``endpoint``; -> counts."""
    ctx = zmq.Context()
    tok = token.encode()
    rng = random.Random(seed)
    stats = {"deterministic": None, "cases": 0, "clean_errors": 0, "accepted": 0, "no_reply": 0, "crashes": 0, "data_lost": 0,
             "good_requests": 0, "by_category": {}}
    good = ctx.socket(zmq.DEALER)
    good.setsockopt(zmq.LINGER, 0)
    good.connect(endpoint)
    expected = None
    t_end = time.monotonic() + seconds
    sock = None

    def fresh():
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        return s

    good.send_multipart(encode({"op": "info", "id": 0}, token=tok))
    if not good.poll(int(reply_timeout_s * 5000)):
        raise SystemExit(f"the server at {endpoint} does not answer; nothing to fuzz")
    obs = good_obs(decode(good.recv_multipart())[0]["info"])

    def good_round_trip(rid: int):
        good.send_multipart(good_message(obs, tok, rid))
        if not good.poll(int(reply_timeout_s * 1000) * 5):
            return None
        rep, arrays = decode(good.recv_multipart())
        return arrays.get("actions") if rep.get("ok") and rep.get("id") == rid else None

    expected = good_round_trip(0)
    if expected is None:
        raise SystemExit(f"the server at {endpoint} does not answer a good request; nothing to fuzz")
    # A sampling policy answers differently each time: then a good answer is one of the right shape,
    # finite; a deterministic one (two equal answers) must also repeat its first answer exactly.
    deterministic = np.array_equal(expected, good_round_trip(-1))

    def lost(got) -> bool:
        if got.shape != expected.shape or got.dtype != expected.dtype or not np.isfinite(got).all():
            return True
        return deterministic and not np.array_equal(got, expected)

    for i, (category, frames) in enumerate(cases(rng, tok, max_bytes, obs)):
        if i >= n_cases or time.monotonic() > t_end:
            break
        if sock is None:
            sock = fresh()
        stats["cases"] += 1
        cat = stats["by_category"].setdefault(category.split("-")[0], {"cases": 0, "clean_errors": 0})
        cat["cases"] += 1
        try:
            sock.send_multipart(frames)
        except (zmq.ZMQError, IndexError):
            stats["clean_errors"] += 1  # refused before it left (e.g. empty multipart)
            continue
        if sock.poll(int(reply_timeout_s * 1000)):
            try:
                rep, _ = decode(sock.recv_multipart())
                if rep.get("ok"):
                    stats["accepted"] += 1
                elif rep.get("code") and rep.get("error"):
                    stats["clean_errors"] += 1
                    cat["clean_errors"] += 1
            except Exception:  # noqa: BLE001 - a reply we cannot read counts as neither
                stats.setdefault("unreadable_replies", 0)
                stats["unreadable_replies"] += 1
        else:
            stats["no_reply"] += 1  # ZeroMQ dropped an oversize frame (and the connection): reconnect
            sock.close(0)
            sock = None
        if i % 10 == 0:  # interleave good traffic: a crash or a lost answer shows here
            stats["good_requests"] += 1
            got = good_round_trip(i + 1)
            if got is None:
                stats["crashes"] += 1
                break
            if lost(got):
                stats["data_lost"] += 1
    stats["good_requests"] += 1
    got = good_round_trip(10 ** 9)
    if got is None:
        stats["crashes"] += 1
    elif lost(got):
        stats["data_lost"] += 1
    stats["deterministic"] = bool(deterministic)
    if sock is not None:
        sock.close(0)
    good.close(0)
    ctx.term()
    return stats


def openpi_cases(rng: random.Random, max_bytes: int, obs: dict):
    """Yield (category, message) forever for the openpi endpoint; ``obs``: a valid observation."""
    import msgpack

    from robopolicy.runtime.openpi_wire import pack

    name, first = next(iter(obs.items()))
    nd = lambda **kw: {b"__ndarray__": True, b"data": first.tobytes(), b"dtype": "<f4", b"shape": list(first.shape), **kw}
    fixed = [
        ("text", "hello"), ("text", "\u2603" * 1000), ("bytes", b""), ("bytes", b"\xc1"), ("bytes", b"\xff" * 100),
        ("msgpack", msgpack.packb([1, 2, 3])), ("msgpack", msgpack.packb(None)), ("msgpack", msgpack.packb("state")),
        ("msgpack", msgpack.packb({})), ("msgpack", msgpack.packb({name: None})), ("msgpack", msgpack.packb({name: "x"})),
        ("msgpack", msgpack.packb({1: 2})), ("msgpack", b"\x91" * 100000), ("msgpack", msgpack.packb({name: [[[[]]]]})),
        ("msgpack", msgpack.packb({"goal": 5, name: nd()})), ("msgpack", msgpack.packb({"prefix": "x", name: nd()})),
        ("msgpack", msgpack.packb({"goal": {"state": nd()}, name: nd()})),
        ("size", b"\0" * (max_bytes + 1)),  # websockets closes the connection (1009)
        ("size", msgpack.packb({name: nd(data=b"\0" * 3)})), ("size", msgpack.packb({name: nd(shape=[2 ** 32] * 3)})),
    ]
    fixed += [("dtype", msgpack.packb({name: nd(dtype=d)})) for d in ["O", "|O", ">f4", "<U4", "(2,)f4", "<c8", "", 7, None]]
    fixed += [("shape", msgpack.packb({name: nd(shape=sh)})) for sh in [[-1], [1.5], [True], ["2"], None, "3", [1] * 40]]
    yield from fixed
    good = pack({k: v[0] for k, v in obs.items()})
    while True:
        m = bytearray(good)
        kind = rng.choice(["flip", "truncate", "extend"])
        if kind == "flip":
            for _ in range(rng.randint(1, 4)):
                m[rng.randrange(len(m))] = rng.randrange(256)
        elif kind == "truncate":
            m = m[: rng.randrange(len(m))]
        else:
            m += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        yield f"mutate-{kind}", bytes(m)


def fuzz_openpi(uri: str, token: str, n_cases: int, seed: int, seconds: float, max_bytes: int, reply_timeout_s: float = 2.0) -> dict:
    """The openpi endpoint's version of :func:`fuzz`: error texts are the clean errors."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from robopolicy.runtime.openpi_wire import OpenPIPredictor, _connect_direct

    rng = random.Random(seed)
    stats = {"cases": 0, "clean_errors": 0, "accepted": 0, "no_reply": 0, "crashes": 0, "data_lost": 0, "good_requests": 0,
             "by_category": {}}
    good = OpenPIPredictor(uri, token=token, timeout_s=reply_timeout_s * 5)
    obs = {k: np.zeros((1, good.obs_horizon, *good.metadata.get("obs_shapes", {}).get(k, [2])), np.float32) for k in good.obs_keys}
    expected = good(obs)
    headers = {"Authorization": f"Api-Key {token}"}
    ws, t_end = None, time.monotonic() + seconds
    for i, (category, message) in enumerate(openpi_cases(rng, max_bytes, obs)):
        if i >= n_cases or time.monotonic() > t_end:
            break
        if ws is None:
            ws = _connect_direct(connect, uri, compression=None, max_size=None, additional_headers=headers)
            ws.recv(timeout=reply_timeout_s * 5)  # metadata
        stats["cases"] += 1
        cat = stats["by_category"].setdefault(category.split("-")[0], {"cases": 0, "clean_errors": 0})
        cat["cases"] += 1
        try:
            ws.send(message)
            rep = ws.recv(timeout=reply_timeout_s)
            if isinstance(rep, str) and rep.startswith("error: "):
                stats["clean_errors"] += 1
                cat["clean_errors"] += 1
            else:
                stats["accepted"] += 1
        except (ConnectionClosed, TimeoutError):
            stats["no_reply"] += 1  # the oversize message: websockets closed this connection
            ws = None
        if i % 10 == 0:
            stats["good_requests"] += 1
            try:
                got = good(obs)
            except Exception:  # noqa: BLE001 - any failure of a good request is a crash
                stats["crashes"] += 1
                break
            if got.shape != expected.shape or not np.isfinite(got).all():
                stats["data_lost"] += 1
    stats["good_requests"] += 1
    try:
        got = good(obs)
        stats["data_lost"] += int(got.shape != expected.shape or not np.isfinite(got).all())
    except Exception:  # noqa: BLE001
        stats["crashes"] += 1
    good.close()
    if ws is not None:
        ws.close()
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-bytes", type=int, default=1 << 20, help="the server's max_message_bytes")
    ap.add_argument("--policy", choices=["fake", "beso"], default="beso",
                    help="beso: an untrained BESO on --task behind ServedPolicy (request checks on); fake: GoToGoal")
    ap.add_argument("--task", default="multimodal")
    ap.add_argument("--endpoint", choices=["zmq", "openpi"], default="zmq")
    args = ap.parse_args()
    from robopolicy.runtime.server import ServerProcess

    token = "fuzz-token"
    if args.policy == "beso":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_runner import build_untrained

        factory, kw = build_untrained, {"task": args.task, "policy": "beso", "steps": 3, "sampler": "ddim"}
    else:
        from robopolicy.runtime.fakes import GoToGoal

        factory, kw = GoToGoal, {"horizon": 8}
    openpi = args.endpoint == "openpi"
    proc = ServerProcess(factory, kw, bind="ws://127.0.0.1:0" if openpi else "tcp://127.0.0.1:0", openpi=openpi,
                         token=token, server_kwargs={"max_message_bytes": args.max_bytes})
    try:
        t0 = time.monotonic()
        st = (fuzz_openpi if openpi else fuzz)(proc.endpoint, token, args.cases, args.seed, args.seconds, args.max_bytes)
        st["seconds"] = round(time.monotonic() - t0, 1)
        st["server_alive"] = proc.process.is_alive()
    finally:
        proc.stop()
    print(f"# python tools/fuzz_server.py --cases {args.cases} --seconds {args.seconds:g} --seed {args.seed} "
          f"--max-bytes {args.max_bytes} --policy {args.policy} --task {args.task} --endpoint {args.endpoint}")
    print(f"cases tried {st['cases']} / clean errors {st['clean_errors']} / accepted {st['accepted']} / "
          f"no reply (oversize, connection dropped) {st['no_reply']} / crashes {st['crashes']} / data lost {st['data_lost']}"
          f" (good requests {st['good_requests']}, answers compared exactly: {st.get('deterministic', False)}, {st['seconds']} s, "
          f"server alive: {st['server_alive']})")
    for cat, c in sorted(st["by_category"].items()):
        print(f"  {cat:10s} cases {c['cases']:5d}  clean errors {c['clean_errors']:5d}")


if __name__ == "__main__":
    main()
