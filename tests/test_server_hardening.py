"""The policy server survives hostile and careless clients: token before parsing, sizes
in unbounded integers, version errors, error replies for every failure, fairness, exposure warning,
and a bounded seeded fuzz run after which a good request is still answered."""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import zmq

from robopolicy.errors import ConfigError
from robopolicy.runtime.client import PolicyClient, ServerError
from robopolicy.runtime.fakes import GoToGoal
from robopolicy.runtime.pool import Busy, FairPool
from robopolicy.runtime.server import is_loopback, serve_in_thread
from robopolicy.runtime.wire import TAG, decode, encode

REPO = Path(__file__).resolve().parents[1]
OBS = {"pos": np.zeros((1, 2, 2), np.float32)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    srv, th = serve_in_thread(GoToGoal(horizon=4), bind="tcp://127.0.0.1:0", token="s3cret", max_message_bytes=1 << 16)
    yield srv
    srv.stop()
    th.join(5)


def raw(endpoint: str, frames: list, timeout_s: float = 5.0):
    """Send raw frames from a fresh DEALER; -> (header, arrays) of the reply, or None if none came."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    try:
        s.send_multipart(frames)
        if not s.poll(int(timeout_s * 1000)):
            return None
        return decode(s.recv_multipart())
    finally:
        s.close(0)


def header(**h) -> bytes:
    return json.dumps({"v": 2, "op": "infer", "id": 5, **h}).encode()


def test_wrong_token_is_refused_before_the_header_is_parsed(server):
    # An invalid header behind a wrong token: the answer is about the token, not the header.
    rep, _ = raw(server.endpoint, [TAG, b"nope", b"\xff{not json", b"\0" * 8])
    assert rep["code"] == "auth"


def test_non_ascii_token_gets_an_auth_error_not_a_crash(server):
    rep, _ = raw(server.endpoint, encode({"op": "ping", "id": 1}, token="tökén☃"))
    assert rep["code"] == "auth"


def test_right_token_is_served(server):
    rep, arrays = raw(server.endpoint, encode({"op": "infer", "id": 3}, {"obs/pos": OBS["pos"]}, token="s3cret"))
    assert rep["ok"]
    assert rep["id"] == 3
    assert arrays["actions"].shape == (4, 2)


@pytest.mark.parametrize("shape", [[2 ** 64], [2 ** 40, 2 ** 40, 2 ** 40], [2 ** 31, 2 ** 31, 4]])
def test_huge_declared_shape_is_a_size_error(server, shape):
    frames = [TAG, b"s3cret", header(arrays=[{"name": "obs/pos", "dtype": "<f4", "shape": shape}]), b"\0" * 16]
    rep, _ = raw(server.endpoint, frames)
    assert rep["code"] == "bad_request"
    assert "exceeds max_message_bytes" in rep["error"]


@pytest.mark.parametrize("dtype", ["O", "|V8", ">f4", "<U4", "(2,)f4", "<c8"])
def test_disallowed_dtypes_are_refused(server, dtype):
    frames = [TAG, b"s3cret", header(arrays=[{"name": "obs/pos", "dtype": dtype, "shape": [1, 2, 2]}]), b"\0" * 16]
    rep, _ = raw(server.endpoint, frames)
    assert rep["code"] == "bad_request"
    assert "not allowed" in rep["error"]


def test_boolean_and_float_shape_entries_are_refused(server):
    frames = [TAG, b"s3cret", header(arrays=[{"name": "obs/pos", "dtype": "<f4", "shape": [True, 2.0, 2]}]), b"\0" * 16]
    rep, _ = raw(server.endpoint, frames)
    assert "non-negative integers" in rep["error"]


def test_other_wire_version_gets_a_version_error(server):
    rep, _ = raw(server.endpoint, [b"robopolicy-wire/1", b"s3cret", header(), b""])
    assert rep["code"] == "version"
    assert "version 2" in rep["error"]


def test_version_one_message_gets_a_version_error(server):
    rep, _ = raw(server.endpoint, [json.dumps({"v": 1, "op": "info", "token": "s3cret"}).encode()])
    assert rep["code"] == "bad_request"  # too few frames to even hold a tag
    rep, _ = raw(server.endpoint, [json.dumps({"v": 1, "op": "info"}).encode(), b"", b""])
    assert rep["code"] == "version"


def test_frame_above_the_limit_is_dropped_by_zeromq_and_the_server_serves_on(server):
    frames = [TAG, b"s3cret", header(arrays=[{"name": "obs/pos", "dtype": "|u1", "shape": [1 << 17]}]), b"\0" * (1 << 17)]
    assert raw(server.endpoint, frames, timeout_s=1.0) is None  # MAXMSGSIZE: the connection is dropped, no reply
    client = PolicyClient(server.endpoint, token="s3cret", timeout_s=5.0)
    assert client(OBS).shape == (4, 2)
    client.close()


def test_policy_exception_is_an_error_reply_and_the_server_lives():
    srv, th = serve_in_thread(GoToGoal(horizon=4, raise_after=0), bind="tcp://127.0.0.1:0")
    try:
        rep, _ = raw(srv.endpoint, encode({"op": "infer", "id": 9}, {"obs/pos": OBS["pos"]}))
        assert rep["code"] == "policy"
        assert "exploded" in rep["error"]
        assert raw(srv.endpoint, encode({"op": "ping", "id": 10}))[0]["ok"]
    finally:
        srv.stop()
        th.join(5)


def test_predictor_returning_garbage_is_an_error_reply():
    srv, th = serve_in_thread(type("Bad", (), {"obs_horizon": 1, "obs_keys": ["pos"], "__call__": lambda self, o, p=None: "x"})(),
                              bind="tcp://127.0.0.1:0")
    try:
        rep, _ = raw(srv.endpoint, encode({"op": "infer", "id": 1}, {"obs/pos": OBS["pos"]}))
        assert rep["ok"] is False
        assert rep["code"] in ("policy", "request")
    finally:
        srv.stop()
        th.join(5)


class Gate:
    """Predictor whose requests with pos[0] == 1 hang until released (a slow client)."""

    obs_horizon, obs_keys, supports_prefix = 2, ["pos"], False

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, obs, prefix=None):
        if obs["pos"][0, -1, 0] == 1.0:
            self.started.set()
            self.release.wait(30)
        return np.zeros((3, 2), np.float32)


def test_slow_client_does_not_block_another():
    gate = Gate()
    srv, th = serve_in_thread(gate, bind="tcp://127.0.0.1:0", workers=2, per_client=1)
    ctx = zmq.Context.instance()
    slow = ctx.socket(zmq.DEALER)
    slow.setsockopt(zmq.LINGER, 0)
    slow.connect(srv.endpoint)
    try:
        slow.send_multipart(encode({"op": "infer", "id": 1}, {"obs/pos": np.ones((1, 2, 2), np.float32)}))
        assert gate.started.wait(10)
        for i in range(5):  # it floods on: refused at once (its one slot is taken), not queued
            slow.send_multipart(encode({"op": "infer", "id": 2 + i}, {"obs/pos": np.ones((1, 2, 2), np.float32)}))
        fast = PolicyClient(srv.endpoint, timeout_s=5.0)
        assert fast(OBS).shape == (3, 2)  # answered while the slow request still hangs
        assert not gate.release.is_set()
        codes = [decode(slow.recv_multipart())[0].get("code") for _ in range(5) if slow.poll(5000)]
        assert codes == ["busy"] * 5
        fast.close()
    finally:
        gate.release.set()
        slow.close(0)
        srv.stop()
        th.join(5)


def test_pool_serves_clients_in_turn():
    pool = FairPool(workers=1, per_client=5, total=10)
    order, gate = [], threading.Event()
    pool.submit("c", gate.wait)  # occupies the only worker while the queue fills
    futs = [pool.submit(c, lambda c=c: order.append(c)) for c in ["a", "a", "a", "b"]]
    gate.set()
    for f in futs:
        f.result(5)
    pool.close()
    assert order == ["a", "b", "a", "a"]


def test_pool_bounds_the_queue():
    pool = FairPool(workers=1, per_client=1, total=1)
    gate = threading.Event()
    pool.submit("a", gate.wait)
    with pytest.raises(Busy):
        pool.submit("a", lambda: None)
    gate.set()
    pool.close()


def test_binding_all_interfaces_without_token_warns(caplog):
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="robopolicy.runtime.server"):
        srv, th = serve_in_thread(GoToGoal(), bind=f"tcp://0.0.0.0:{port}")
    srv.stop()
    th.join(5)
    assert srv.exposed_without_token
    assert "without a token" in caplog.text


def test_binding_all_interfaces_with_token_does_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="robopolicy.runtime.server"):
        srv, th = serve_in_thread(GoToGoal(), bind=f"tcp://0.0.0.0:{free_port()}", token="t")
    srv.stop()
    th.join(5)
    assert not srv.exposed_without_token
    assert "without a token" not in caplog.text


def test_loopback_detection():
    assert [is_loopback(e) for e in ["tcp://127.0.0.1:1", "tcp://localhost:1", "ipc:///tmp/x", "tcp://[::1]:1",
                                     "tcp://0.0.0.0:1", "tcp://*:1", "tcp://10.0.0.2:1", "ws://192.168.1.2:80"]] == \
        [True, True, True, True, False, False, False, False]


def test_bounded_seeded_fuzz_then_a_good_request_is_answered(server):
    spec = importlib.util.spec_from_file_location("fuzz_server", REPO / "tools" / "fuzz_server.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    st = fuzz.fuzz(server.endpoint, "s3cret", n_cases=150, seed=1, seconds=60, max_bytes=1 << 16, reply_timeout_s=1.0)
    assert st["cases"] == 150
    assert st["crashes"] == 0
    assert st["data_lost"] == 0
    client = PolicyClient(server.endpoint, token="s3cret", timeout_s=5.0)
    assert np.allclose(client(OBS), GoToGoal(horizon=4)(OBS))
    client.close()


def test_client_imports_without_torch_and_talks_to_the_server(server):
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"  # any 'import torch' now raises ImportError
        "import numpy as np\n"
        "from robopolicy.runtime.client import PolicyClient\n"
        f"c = PolicyClient({server.endpoint!r}, token='s3cret', timeout_s=10.0)\n"
        "a = c({'pos': np.zeros((1, 2, 2), np.float32)})\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('gymnasium', 'mujoco', 'hydra', 'omegaconf', 'metaworld'))\n"
        "print(a.shape, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(4, 2) []"


def test_server_error_carries_its_code(server):
    client = PolicyClient(server.endpoint, token="s3cret", timeout_s=5.0)
    with pytest.raises(ServerError) as e:
        client._request({"op": "nonsense"})
    assert e.value.code == "bad_request"
    client.close()


def test_client_facing_a_server_of_another_wire_version_gets_one_sentence():
    # A stand-in for an old server: it answers everything with a version-1 style single JSON frame.
    ctx = zmq.Context.instance()
    old = ctx.socket(zmq.ROUTER)
    old.setsockopt(zmq.LINGER, 0)
    port = old.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            if old.poll(50):
                ident, *_ = old.recv_multipart()
                old.send_multipart([ident, json.dumps({"v": 1, "ok": False, "error": "unsupported"}).encode()])

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        with pytest.raises(ConfigError, match="another wire version"):
            PolicyClient(f"tcp://127.0.0.1:{port}", timeout_s=2.0, connect_timeout_s=3.0)
    finally:
        stop.set()
        th.join(5)
        old.close(0)


def test_numeric_token_from_the_command_line_works():
    srv, th = serve_in_thread(GoToGoal(horizon=4), bind="tcp://127.0.0.1:0", token=12345)
    try:
        client = PolicyClient(srv.endpoint, token=12345, timeout_s=5.0)
        assert client(OBS).shape == (4, 2)
        client.close()
    finally:
        srv.stop()
        th.join(5)
