"""Episode store: layout, reading, validation errors, and atomic appends under a killed writer."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zarr

from robopolicy.data import EpisodeStore
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import DataError

SPEC = EnvSpec(
    obs={"state": ObsKeySpec((3,)), "cam": ObsKeySpec((16, 16, 3), "uint8", "rgb")},
    action_dim=2,
    action_low=(-1.0, -1.0),
    action_high=(1.0, 1.0),
    max_episode_steps=50,
    name="toy",
)


def make_episode(i: int, T: int | None = None) -> dict[str, np.ndarray]:
    """Deterministic episode number ``i`` (so a reader can check it exactly)."""
    rng = np.random.default_rng(i)
    T = T or 5 + i % 7
    return {
        "state": rng.normal(size=(T, 3)).astype(np.float32),
        "cam": rng.integers(0, 256, size=(T, 16, 16, 3), dtype=np.uint8),
        "action": rng.uniform(-1, 1, size=(T, 2)).astype(np.float32),
        "reward": rng.normal(size=T).astype(np.float32),
        "success": rng.random(T) < 0.3,
        "done": np.arange(T) == T - 1,
    }


def assert_episode_equal(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_create_append_read_and_plain_zarr(tmp_path):
    path = tmp_path / "s.zarr"
    store = EpisodeStore.create(path, SPEC, attrs={"command": "test"})
    for i in range(3):
        store.append_episode(make_episode(i))
    r = EpisodeStore.open(path)
    assert r.n_episodes == 3 and r.spec == SPEC and r.attrs == {"command": "test"}
    lengths = [5, 6, 7]
    np.testing.assert_array_equal(r.episode_ends, np.cumsum(lengths))
    assert r.n_steps == sum(lengths) and r.episode_ends.dtype == np.int64
    assert r.keys == sorted(["state", "cam", "action", "reward", "success", "done"])
    for i, ep in enumerate(r.iter_episodes()):
        assert_episode_equal(ep, make_episode(i))
    assert_episode_equal(r.episode(-1), make_episode(2))
    all_state = np.concatenate([make_episode(i)["state"] for i in range(3)])
    np.testing.assert_array_equal(r.get("state"), all_state)
    np.testing.assert_array_equal(r.get("state", slice(2, 9)), all_state[2:9])
    np.testing.assert_array_equal(r.get("state", slice(1, 15, 4)), all_state[1:15:4])
    np.testing.assert_array_equal(r.get("state", np.array([17, 0, 3])), all_state[[17, 0, 3]])
    with pytest.raises(IndexError):
        r.get("state", np.array([18]))
    # plain zarr reads the same layout
    g = zarr.open_group(str(path), mode="r")
    np.testing.assert_array_equal(g["meta/episode_ends"][:], np.cumsum(lengths))
    assert g["data/cam"].dtype == np.uint8 and g["data/cam"].shape == (18, 16, 16, 3)
    assert g["data/cam"].chunks[0] < 18 and g.attrs["env_spec"]["name"] == "toy"
    with pytest.raises(DataError, match="read-only"):
        r.append_episode(make_episode(4))


def test_extra_key_with_first_episode_and_update_attrs(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", SPEC)
    ep = {**make_episode(0), "state_sim": np.ones((5, 4), np.float64)}
    store.append_episode(ep)
    store.update_attrs({"episodes_ok": 1})
    store.close()
    r = EpisodeStore.open(tmp_path / "s.zarr", required_keys=["state_sim"])
    assert r.get("state_sim").dtype == np.float64 and r.attrs == {"episodes_ok": 1}
    with pytest.raises(DataError, match="lacks key"):
        EpisodeStore.open(tmp_path / "s.zarr", mode="a").append_episode(make_episode(1))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda e: e.pop("action"), "lacks key"),
        (lambda e: e.update(extra=np.zeros(5)), "does not hold"),
        (lambda e: e.update(reward=np.zeros(4, np.float32)), "different lengths"),
        (lambda e: e.update(state=np.zeros((5, 4), np.float32)), "per-step shape"),
        (lambda e: e.update(cam=e["cam"].astype(np.float32)), "uint8"),
        (lambda e: e["state"].__setitem__((2, 1), np.nan), "NaN"),
        (lambda e: e["action"].__setitem__((0, 0), np.inf), "NaN or infinite"),
    ],
)
def test_append_rejects_bad_episodes_and_writes_nothing(tmp_path, change, match):
    store = EpisodeStore.create(tmp_path / "s.zarr", SPEC)
    store.append_episode(make_episode(0))
    bad = make_episode(1, T=5)
    change(bad)
    with pytest.raises(DataError, match=match):
        store.append_episode(bad)
    r = EpisodeStore.open(tmp_path / "s.zarr")
    assert r.n_episodes == 1 and r.keys == sorted(make_episode(0))


def test_open_errors(tmp_path):
    with pytest.raises(DataError, match="No episode store"):
        EpisodeStore.open(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="not a zarr store"):
        EpisodeStore.open(tmp_path / "plain")
    with pytest.raises(DataError, match="not a zarr store"):
        EpisodeStore.create(tmp_path / "plain", SPEC, overwrite=True)
    zarr.open_group(str(tmp_path / "g.zarr"), mode="w").create_group("data")
    with pytest.raises(DataError, match="not an episode store"):
        EpisodeStore.open(tmp_path / "g.zarr")
    EpisodeStore.create(tmp_path / "s.zarr", SPEC)
    with pytest.raises(DataError, match="already exists"):
        EpisodeStore.create(tmp_path / "s.zarr", SPEC)
    with pytest.raises(DataError, match="no data/depth"):
        EpisodeStore.open(tmp_path / "s.zarr", required_keys=["depth"])
    with pytest.raises(DataError, match="mode"):
        EpisodeStore.open(tmp_path / "s.zarr", mode="w")


def _store_with(tmp_path, n=2):
    path = tmp_path / "s.zarr"
    store = EpisodeStore.create(path, SPEC)
    for i in range(n):
        store.append_episode(make_episode(i))
    return path, zarr.open_group(str(path), mode="r+")


def test_open_rejects_missing_spec_key(tmp_path):
    path, g = _store_with(tmp_path)
    del g["data/state"]
    with pytest.raises(DataError, match="no data/state"):
        EpisodeStore.open(path)


def test_open_rejects_ragged_lengths(tmp_path):
    path, g = _store_with(tmp_path)
    g["data/reward"].resize((3,))
    with pytest.raises(DataError, match="ragged"):
        EpisodeStore.open(path)


def test_open_rejects_wrong_dtype(tmp_path):
    path, g = _store_with(tmp_path)
    old = g["data/action"][:]
    del g["data/action"]
    g.create_array("data/action", data=old.astype(np.float64))
    with pytest.raises(DataError, match="dtype float64"):
        EpisodeStore.open(path)


def test_open_rejects_non_monotonic_episode_ends(tmp_path):
    path, g = _store_with(tmp_path, n=3)
    ends = g["meta/episode_ends"]
    ends[:] = np.array([11, 5, 18])
    g.update_attributes({"committed": {"n_episodes": 3, "n_steps": 18}})
    with pytest.raises(DataError, match="strictly increasing"):
        EpisodeStore.open(path)


WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path.insert(0, {tests_dir!r})
    from test_store import SPEC, make_episode
    from robopolicy.data.store import EpisodeStore

    path, how = sys.argv[1], sys.argv[2]
    store = EpisodeStore.create(path, SPEC, fsync=how != "loop_nofsync")
    for i in range(3):
        store.append_episode(make_episode(i))
    if how.startswith("loop"):
        i = 3
        while True:
            store.append_episode(make_episode(i, T=40))
            print("committed", i, flush=True)
            i += 1
    def pause(*a, **k):
        print("PAUSED", flush=True)
        time.sleep(60)
    if how == "before_commit":
        EpisodeStore._commit = pause
    else:  # mid_data: after the first array's rows are written
        orig = EpisodeStore._write_rows
        def write_then_pause(self, key, start, rows):
            orig(self, key, start, rows)
            pause()
        EpisodeStore._write_rows = write_then_pause
    store.append_episode(make_episode(3, T=40))
    """
)


def _start_writer(tmp_path, how):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(tests_dir=os.path.dirname(__file__)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "s.zarr"), how], stdout=subprocess.PIPE, text=True, env=env)


def _check_recovered(path, n_min):
    r = EpisodeStore.open(path)
    assert r.n_episodes >= n_min
    for i in range(r.n_episodes):
        assert_episode_equal(r.episode(i), make_episode(i, T=None if i < 3 else 40))
    a = EpisodeStore.open(path, mode="a")
    a.append_episode(make_episode(100))
    r = EpisodeStore.open(path)
    assert_episode_equal(r.episode(-1), make_episode(100))
    for i in range(r.n_episodes - 1):
        assert_episode_equal(r.episode(i), make_episode(i, T=None if i < 3 else 40))
    assert zarr.open_group(str(path), mode="r")["data/state"].shape[0] == r.n_steps
    return r


@pytest.mark.parametrize("how", ["mid_data", "before_commit"])
def test_killed_writer_leaves_earlier_episodes_intact(tmp_path, how):
    proc = _start_writer(tmp_path, how)
    try:
        assert proc.stdout.readline().strip() == "PAUSED"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    path = tmp_path / "s.zarr"
    committed = EpisodeStore.open(path)
    g = zarr.open_group(str(path), mode="r")
    # the kill really happened after rows of the new episode reached the disk
    assert max(a.shape[0] for _, a in g["data"].arrays()) == committed.n_steps + 40
    assert g["meta/episode_ends"].shape[0] == (4 if how == "before_commit" else 3)
    r = _check_recovered(path, n_min=3)
    assert r.n_episodes == 4  # the killed episode is gone, the recovery append is there


@pytest.mark.parametrize("how, delay_s", [("loop", 0.013), ("loop_nofsync", 0.007)])
def test_writer_killed_at_arbitrary_time(tmp_path, how, delay_s):
    proc = _start_writer(tmp_path, how)
    try:
        assert proc.stdout.readline().split()[:2] == ["committed", "3"]
        time.sleep(delay_s)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _check_recovered(tmp_path / "s.zarr", n_min=4)


def test_recovery_drops_extra_key_of_an_uncommitted_first_episode(tmp_path, monkeypatch):
    store = EpisodeStore.create(tmp_path / "s.zarr", SPEC)

    def interrupted(*args):
        raise KeyboardInterrupt  # stands in for a kill between the data writes and the commit

    monkeypatch.setattr(EpisodeStore, "_commit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.append_episode({**make_episode(0), "state_sim": np.zeros((5, 2))})
    monkeypatch.undo()
    store.close()  # the killed writer's lock dies with it
    assert EpisodeStore.open(tmp_path / "s.zarr").n_episodes == 0
    store = EpisodeStore.open(tmp_path / "s.zarr", mode="a")
    assert "state_sim" not in store.keys
    store.append_episode(make_episode(0))
    assert_episode_equal(EpisodeStore.open(tmp_path / "s.zarr").episode(0), make_episode(0))
