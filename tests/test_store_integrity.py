"""Episode store integrity: one writer (lock), damaged chunks are errors, overwrite deletes only stores,
finiteness after the cast, and ``robopolicy-verify``."""

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import zarr

from robopolicy.cli.verify import main as verify_main
from robopolicy.data import EpisodeStore, store_verify
from robopolicy.data.store_lock import StoreLockedError
from robopolicy.data.store_verify import StoreCorruptError
from robopolicy.errors import DataError
from test_store import SPEC, assert_episode_equal, make_episode

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _store(tmp_path, n=3):
    path = tmp_path / "s.zarr"
    with EpisodeStore.create(path, SPEC, fsync=False) as store:
        for i in range(n):
            store.append_episode(make_episode(i))
    return path


HOLDER = textwrap.dedent(
    """
    import sys, time
    from robopolicy.data.store import EpisodeStore
    store = EpisodeStore.open(sys.argv[1], mode="a")
    print("LOCKED", flush=True)
    time.sleep(120)
    """
)


def test_second_writer_is_refused_with_the_holder_and_a_killed_holder_frees_the_lock(tmp_path):
    path = _store(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout.readline().strip() == "LOCKED"
        with pytest.raises(StoreLockedError, match=f"pid {proc.pid} on "):
            EpisodeStore.open(path, mode="a")
        with pytest.raises(StoreLockedError, match="being written"):
            EpisodeStore.create(path, SPEC, overwrite=True)
        assert EpisodeStore.open(path).n_episodes == 3  # readers are not blocked
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with EpisodeStore.open(path, mode="a") as store:  # no stale lock after SIGKILL
        store.append_episode(make_episode(3))
    assert EpisodeStore.open(path).n_episodes == 4


def test_second_handle_in_one_process_is_refused_until_close(tmp_path):
    path = _store(tmp_path)
    first = EpisodeStore.open(path, mode="a")
    with pytest.raises(StoreLockedError):
        EpisodeStore.open(path, mode="a")
    first.close()
    EpisodeStore.open(path, mode="a").close()


def _chunk(path, key="action"):
    """The first chunk file of data/<key> (one grid index per dimension)."""
    ndim = {"reward": 1, "success": 1, "done": 1, "cam": 4}.get(key, 2)
    return path.joinpath("data", key, "c", *["0"] * ndim)


def test_missing_chunk_is_an_error_not_zeros(tmp_path):
    path = _store(tmp_path)
    _chunk(path).unlink()
    with pytest.raises(StoreCorruptError, match="data/action holding rows 0..17 is missing"):
        EpisodeStore.open(path)


def test_missing_chunk_is_found_without_decoding_large_stores(tmp_path, monkeypatch):
    path = _store(tmp_path)
    _chunk(path).unlink()
    monkeypatch.setattr(store_verify, "VERIFY_ON_OPEN_MAX_BYTES", 0)
    with pytest.raises(StoreCorruptError, match="is missing"):
        EpisodeStore.open(path)


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "flip_byte"])
def test_damaged_chunk_is_an_error_on_open(tmp_path, damage):
    path = _store(tmp_path)
    f = _chunk(path)
    data = bytearray(f.read_bytes())
    new = {"truncate": data[: len(data) // 2], "empty": b"", "garbage": os.urandom(len(data)),
           "flip_byte": data[:10] + bytes([data[10] ^ 0x01]) + data[11:]}[damage]
    f.write_bytes(bytes(new))
    with pytest.raises(StoreCorruptError, match="data/action holding rows 0..17 does not decode"):
        EpisodeStore.open(path)


def test_damaged_chunk_of_a_large_store_fails_when_read(tmp_path, monkeypatch):
    path = _store(tmp_path)
    _chunk(path).write_bytes(b"\0" * 7)
    monkeypatch.setattr(store_verify, "VERIFY_ON_OPEN_MAX_BYTES", 0)
    store = EpisodeStore.open(path)  # presence only
    with pytest.raises(StoreCorruptError, match="data/action .* does not decode"):
        store.episode(0)


def test_all_zero_chunks_are_written_and_verify(tmp_path):
    path = tmp_path / "z.zarr"
    ep = {k: np.zeros_like(v) for k, v in make_episode(0).items()}
    with EpisodeStore.create(path, SPEC, fsync=False) as store:
        store.append_episode(ep)
    assert _chunk(path, "reward").is_file()
    report = EpisodeStore.open(path).verify()
    assert (report.chunks, report.chunks_decoded, report.unverifiable) == (7, 7, 0)


def test_rewritten_episode_ends_are_caught(tmp_path):
    path = _store(tmp_path)
    ends = zarr.open_group(str(path), mode="r+")["meta/episode_ends"]
    shifted = ends[:]
    shifted[0] += 1  # still increasing, same total: only the commit checksum can tell
    ends[:] = shifted
    with pytest.raises(StoreCorruptError, match="checksum mismatch"):
        EpisodeStore.open(path)


@pytest.mark.parametrize("inside", ["notes.txt", "sub/data.bin"])
def test_overwrite_refuses_a_directory_that_is_not_a_store(tmp_path, inside):
    target = tmp_path / "out"
    (target / inside).parent.mkdir(parents=True)
    (target / inside).write_text("mine")
    with pytest.raises(DataError, match="is not a zarr store, so it will not be overwritten"):
        EpisodeStore.create(target, SPEC, overwrite=True)
    assert sorted(p.name for p in target.rglob("*")) == sorted({*inside.split("/")})
    assert (target / inside).read_text() == "mine"


def test_overwrite_refuses_a_file(tmp_path):
    target = tmp_path / "out.zarr"
    target.write_text("mine")
    with pytest.raises(DataError, match="not a zarr store"):
        EpisodeStore.create(target, SPEC, overwrite=True)
    assert target.read_text() == "mine"


def test_overwrite_replaces_a_store(tmp_path):
    path = _store(tmp_path)
    with EpisodeStore.create(path, SPEC, overwrite=True, fsync=False) as store:
        store.append_episode(make_episode(7))
    assert_episode_equal(EpisodeStore.open(path).episode(0), make_episode(7))


def test_value_beyond_float32_is_refused_after_the_cast(tmp_path):
    ep = make_episode(0)
    ep["action"] = ep["action"].astype(np.float64)
    ep["action"][2, 1] = 1e39  # finite as float64, inf as float32
    with EpisodeStore.create(tmp_path / "s.zarr", SPEC, fsync=False) as store:
        with pytest.raises(DataError, match=r"'action' is NaN or infinite at step 2 after casting to the stored float32"):
            store.append_episode(ep)
        assert store.n_episodes == 0


def test_nan_into_a_bool_key_is_refused(tmp_path):
    ep = make_episode(0)
    ep["success"] = np.where(ep["success"], 1.0, 0.0)
    ep["success"][3] = np.nan  # would silently become True
    with EpisodeStore.create(tmp_path / "s.zarr", SPEC, fsync=False) as store:
        with pytest.raises(DataError, match="'success' is NaN or infinite at step 3"):
            store.append_episode(ep)


def test_verify_cli_summary(tmp_path, capsys):
    path = _store(tmp_path)
    verify_main([str(path)])
    assert "ok, 3 episodes, 18 steps, 7 arrays, 8/8 chunks decoded" in capsys.readouterr().out


def test_verify_cli_corrupt_store_is_one_sentence_and_exit_2(tmp_path, capsys):
    path = _store(tmp_path)
    _chunk(path, "cam").write_bytes(b"garbage")
    with pytest.raises(SystemExit) as exit_:
        verify_main([str(path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "data/cam holding rows 0..15 does not decode" in lines[0]


def test_create_without_overwrite_refuses_a_store_made_meanwhile(tmp_path, monkeypatch):
    path = _store(tmp_path)
    import robopolicy.data.store as store_mod

    monkeypatch.setattr(store_mod.Path, "exists", lambda self: False)  # as if it appeared after the first check
    with pytest.raises(DataError, match="already exists"):
        EpisodeStore.create(path, SPEC)
    monkeypatch.undo()
    assert EpisodeStore.open(path).n_episodes == 3


def test_plain_zarr_lists_a_locked_store_without_warnings(tmp_path):
    path = _store(tmp_path)
    with EpisodeStore.open(path, mode="a"), warnings.catch_warnings():
        warnings.simplefilter("error")
        names = {k for k, _ in zarr.open_group(str(path), mode="r").members(max_depth=None)}
    assert {"data/action", "meta/episode_ends"} <= names


@pytest.mark.parametrize("meta", ["zarr.json", "data/zarr.json", "data/action/zarr.json", "meta/episode_ends/zarr.json"])
def test_garbage_metadata_is_one_sentence(tmp_path, meta):
    path = _store(tmp_path)
    (path / meta).write_bytes(b"\xb0\x00 not json")
    with pytest.raises(DataError) as err:
        EpisodeStore.open(path)
    assert len(str(err.value).splitlines()) == 1
    assert str(path) in str(err.value)


def test_a_folder_with_some_json_named_zarr_json_is_not_a_store(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "zarr.json").write_text('{"mine": true}')
    with pytest.raises(DataError, match="not a zarr store"):
        EpisodeStore.create(target, SPEC, overwrite=True)
    assert (target / "zarr.json").read_text() == '{"mine": true}'


def test_pickled_store_reopens_read_only_without_decoding_again(tmp_path, monkeypatch):
    import pickle

    path = _store(tmp_path)
    blob = pickle.dumps(EpisodeStore.open(path))

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(store_verify, "verify_store", no_decode)
    copy = pickle.loads(blob)
    assert copy.mode == "r"
    assert_episode_equal(copy.episode(1), make_episode(1))


def test_append_to_a_folder_that_is_not_a_store_leaves_it_untouched(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="is not a zarr store"):
        EpisodeStore.open(target, mode="a")
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
