"""The openpi-protocol endpoint: openpi's own client drives a robopolicy policy, a minimal client
written here from the documented protocol does too, and malformed input gets error texts while the
endpoint keeps serving."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from _eval_toys import PointTask
from _server_toys import GoalBiasPolicy, run_eval_match

from robopolicy.errors import ConfigError
from robopolicy.evaluation import evaluate_policy
from robopolicy.runtime.openpi_server import serve_openpi_in_thread
from robopolicy.runtime.openpi_wire import OpenPIPredictor, pack, unpack
from robopolicy.runtime.wire import WireError

TASK = PointTask(max_steps=12)
SPEC = TASK.spec
STATE = np.array([0.0, 0.0, 0.5, -0.5], np.float32)
GREEDY = [0.1, -0.1]  # GoalBiasPolicy's first action at STATE without a goal


@pytest.fixture
def endpoint():
    srv, th = serve_openpi_in_thread(GoalBiasPolicy(SPEC), max_message_bytes=1 << 16)
    yield srv
    srv.stop()
    th.join(5)


def nd(a: np.ndarray) -> dict:
    """openpi's array encoding, written out from its documentation (independent of ours)."""
    return {b"__ndarray__": True, b"data": a.tobytes(), b"dtype": a.dtype.str, b"shape": list(a.shape)}


def nd_hook(d: dict):
    if b"__ndarray__" in d:
        return np.frombuffer(d[b"data"], dtype=np.dtype(d[b"dtype"])).reshape(d[b"shape"])
    return d


def minimal_connect(uri: str, headers=None):
    from websockets.sync.client import connect

    ws = connect(uri, compression=None, max_size=None, additional_headers=headers, legacy=True)
    return ws, msgpack.unpackb(ws.recv(timeout=10), object_hook=nd_hook)


def minimal_infer(ws, obs: dict):
    ws.send(msgpack.packb(obs, default=lambda a: nd(a)))
    rep = ws.recv(timeout=10)
    return rep if isinstance(rep, str) else msgpack.unpackb(rep, object_hook=nd_hook)


def test_minimal_protocol_client_gets_metadata_then_actions(endpoint):
    ws, meta = minimal_connect(endpoint.endpoint)
    assert meta["protocol"] == "openpi-websocket"
    assert meta["obs_keys"] == ["state"]
    rep = minimal_infer(ws, {"state": STATE, "prompt": "reach the goal"})
    assert rep["actions"].shape == (7, 2)
    np.testing.assert_allclose(rep["actions"][0], GREEDY)
    ws.close()


def test_minimal_client_sends_a_goal(endpoint):
    ws, _ = minimal_connect(endpoint.endpoint)
    rep = minimal_infer(ws, {"state": STATE, "goal": {"state": np.array([0.0, 0.05, 0, 0], np.float32)}})
    np.testing.assert_allclose(rep["actions"][0], [0.1, -0.05])
    ws.close()


def test_history_of_obs_horizon_steps_is_accepted(endpoint):
    ws, _ = minimal_connect(endpoint.endpoint)
    rep = minimal_infer(ws, {"state": np.stack([STATE, STATE])})
    np.testing.assert_allclose(rep["actions"][0], GREEDY)
    ws.close()


@pytest.mark.parametrize("bad", [b"\xc1garbage", msgpack.packb([1, 2, 3]),
                                 msgpack.packb({"state": {b"__ndarray__": True, b"data": b"\0" * 3, b"dtype": "<f4", b"shape": [4]}}),
                                 msgpack.packb({"state": {b"__ndarray__": True, b"data": b"", b"dtype": "|O", b"shape": [0]}}),
                                 msgpack.packb({"state": {b"__ndarray__": True, b"data": b"", b"dtype": "<f4", b"shape": [2 ** 32, 2 ** 32, 2 ** 32]}}),
                                 msgpack.packb({"prompt": "no state"}), "a text message"])
def test_malformed_message_gets_an_error_text_and_the_connection_serves_on(endpoint, bad):
    ws, _ = minimal_connect(endpoint.endpoint)
    ws.send(bad)
    rep = ws.recv(timeout=10)
    assert isinstance(rep, str)
    assert rep.startswith("error: ")
    np.testing.assert_allclose(minimal_infer(ws, {"state": STATE})["actions"][0], GREEDY)
    ws.close()


def test_message_above_the_limit_closes_that_connection_only(endpoint):
    from websockets.exceptions import ConnectionClosed

    ws, _ = minimal_connect(endpoint.endpoint)
    with pytest.raises(ConnectionClosed):
        ws.send(b"\0" * (1 << 17))
        ws.recv(timeout=10)
    ws2, _ = minimal_connect(endpoint.endpoint)
    np.testing.assert_allclose(minimal_infer(ws2, {"state": STATE})["actions"][0], GREEDY)
    ws2.close()


def test_api_key_is_checked_at_the_handshake():
    from websockets.exceptions import InvalidStatus

    srv, th = serve_openpi_in_thread(GoalBiasPolicy(SPEC), token="k3y")
    try:
        with pytest.raises(InvalidStatus):
            minimal_connect(srv.endpoint, headers={"Authorization": "Api-Key wrong"})
        ws, meta = minimal_connect(srv.endpoint, headers={"Authorization": "Api-Key k3y"})
        assert meta["obs_keys"] == ["state"]
        ws.close()
    finally:
        srv.stop()
        th.join(5)


def test_our_codec_refuses_big_endian_and_object_arrays():
    with pytest.raises(WireError):
        unpack(msgpack.packb({b"__ndarray__": True, b"data": b"\0" * 4, b"dtype": ">f4", b"shape": [1]}), 1 << 10)
    with pytest.raises(WireError):
        pack({"x": np.array(["a"], dtype=object)})


def test_our_codec_round_trips_openpi_encoding():
    a = np.arange(6, dtype=np.int16).reshape(2, 3)
    out = unpack(pack({"a": a, "s": np.float32(1.5), "nested": {"b": a[0]}}), 1 << 10)
    np.testing.assert_array_equal(out["a"], a)
    assert out["s"] == np.float32(1.5)
    assert out["s"].dtype == np.float32


def test_openpi_client_drives_our_policy(endpoint):
    wcp = pytest.importorskip("openpi_client.websocket_client_policy",
                              reason="openpi-client not installed (pip install --no-deps openpi-client to run this)")
    client = wcp.WebsocketClientPolicy(host=endpoint.endpoint)
    assert client.get_server_metadata()["obs_horizon"] == 2
    out = client.infer({"state": STATE, "prompt": "reach"})
    assert out["actions"].shape == (7, 2)
    np.testing.assert_allclose(out["actions"][0], GREEDY)


def test_openpi_client_with_api_key():
    wcp = pytest.importorskip("openpi_client.websocket_client_policy",
                              reason="openpi-client not installed (pip install --no-deps openpi-client to run this)")
    srv, th = serve_openpi_in_thread(GoalBiasPolicy(SPEC), token="k3y")
    try:
        out = wcp.WebsocketClientPolicy(host=srv.endpoint, api_key="k3y").infer({"state": STATE})
        np.testing.assert_allclose(out["actions"][0], GREEDY)
    finally:
        srv.stop()
        th.join(5)


def test_our_predictor_refused_with_a_wrong_key_is_one_sentence():
    srv, th = serve_openpi_in_thread(GoalBiasPolicy(SPEC), token="k3y")
    try:
        with pytest.raises(ConfigError, match="refused the connection"):
            OpenPIPredictor(srv.endpoint, token="nope", connect_timeout_s=5.0)
    finally:
        srv.stop()
        th.join(5)


@pytest.mark.slow
def test_runner_through_the_openpi_endpoint_matches_in_process_evaluation(endpoint):
    goal = {"state": np.array([0.0, 0.02, 0.0, 0.0], np.float32)}
    ref = evaluate_policy(GoalBiasPolicy(SPEC), TASK, 6, seed=4, goal=goal, progress=False)["successes"]
    stats = run_eval_match(OpenPIPredictor(endpoint.endpoint, timeout_s=5.0, goal=goal), TASK, 6, 4)
    assert [e["success"] for e in stats.episodes] == ref


@pytest.mark.slow
def test_openpi_endpoint_in_a_child_process():
    from _server_toys import goal_toy_factory

    from robopolicy.runtime.server import ServerProcess

    proc = ServerProcess(goal_toy_factory, {}, bind="ws://127.0.0.1:0", openpi=True)
    try:
        pred = OpenPIPredictor(proc.endpoint, timeout_s=10.0)
        np.testing.assert_allclose(pred({"state": np.tile(STATE, (1, 2, 1))})[0], GREEDY)
        pred.close()
    finally:
        proc.stop()


def test_bounded_seeded_fuzz_of_the_openpi_endpoint_then_a_good_request_is_answered():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("fuzz_server", Path(__file__).resolve().parents[1] / "tools" / "fuzz_server.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    srv, th = serve_openpi_in_thread(GoalBiasPolicy(SPEC), token="k3y", max_message_bytes=1 << 16)
    try:
        st = fuzz.fuzz_openpi(srv.endpoint, "k3y", n_cases=120, seed=2, seconds=60, max_bytes=1 << 16, reply_timeout_s=1.0)
        assert st["cases"] == 120
        assert st["crashes"] == 0
        assert st["data_lost"] == 0
        pred = OpenPIPredictor(srv.endpoint, token="k3y", timeout_s=5.0)
        np.testing.assert_allclose(pred({"state": np.tile(STATE, (1, 2, 1))})[0], GREEDY)
        pred.close()
    finally:
        srv.stop()
        th.join(5)


def test_openpi_endpoint_on_all_interfaces_without_token_warns(caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="robopolicy.runtime.server"):
        srv, th = serve_openpi_in_thread(GoalBiasPolicy(SPEC), bind="ws://0.0.0.0:0")
    srv.stop()
    th.join(5)
    assert srv.exposed_without_token
    assert "without a token" in caplog.text
