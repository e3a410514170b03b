"""robomimic HDF5 import/export: a small file written here with h5py survives a round trip."""

import json

import h5py
import numpy as np
import pytest

from robopolicy.data import EpisodeStore, export_robomimic, import_robomimic
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import DataError

ENV_ARGS = {"env_name": "Lift", "type": 1, "env_kwargs": {"control_freq": 20, "robots": ["Panda"]}}
LENGTHS = {1: 4, 2: 6, 9: 3, 10: 5}  # demo_10 must come after demo_9 (not after demo_1)


def demo_arrays(i: int, T: int) -> dict:
    rng = np.random.default_rng(i)
    rewards = np.zeros(T)
    rewards[-1] = 1.0
    return {
        "actions": rng.uniform(-1, 1, size=(T, 7)),
        "rewards": rewards,
        "dones": (np.arange(T) == T - 1).astype(np.int64),
        "states": rng.normal(size=(T, 9)),  # float64 MuJoCo states
        "obs/robot0_eef_pos": rng.normal(size=(T, 3)).astype(np.float32),
        "obs/object": rng.normal(size=(T, 10)).astype(np.float32),
        "obs/agentview_image": rng.integers(0, 256, size=(T, 8, 8, 3), dtype=np.uint8),
    }


def write_robomimic(path):
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for i in sorted(LENGTHS, key=str):  # written in lexical order on purpose
            g = data.create_group(f"demo_{i}")
            for k, v in demo_arrays(i, LENGTHS[i]).items():
                g.create_dataset(k, data=v)
            g.attrs["num_samples"] = LENGTHS[i]
        data.attrs["total"] = sum(LENGTHS.values())
        data.attrs["env_args"] = json.dumps(ENV_ARGS)
        f["mask/train"] = np.array(["demo_1", "demo_2", "demo_10"], dtype="S")
        f["mask/valid"] = np.array(["demo_9"], dtype="S")


def test_import(tmp_path):
    write_robomimic(tmp_path / "in.hdf5")
    store = import_robomimic(tmp_path / "in.hdf5", tmp_path / "s.zarr")
    order = sorted(LENGTHS)
    assert store.n_episodes == 4 and list(np.diff(np.concatenate([[0], store.episode_ends]))) == [LENGTHS[i] for i in order]
    assert store.spec.rgb_keys == ["agentview_image"] and sorted(store.spec.lowdim_keys) == ["object", "robot0_eef_pos"]
    assert store.spec.action_dim == 7 and store.spec.name == "Lift" and store.spec.control_hz == 20
    assert store.attrs["env_args"] == ENV_ARGS and store.attrs["masks"]["valid"] == ["demo_9"]
    for e, i in enumerate(order):
        ep, src = store.episode(e), demo_arrays(i, LENGTHS[i])
        np.testing.assert_allclose(ep["action"], src["actions"], rtol=1e-6)
        np.testing.assert_array_equal(ep["state_sim"], src["states"])
        np.testing.assert_array_equal(ep["agentview_image"], src["obs/agentview_image"])
        np.testing.assert_array_equal(ep["done"], src["dones"].astype(bool))
        np.testing.assert_array_equal(ep["success"], src["rewards"] > 0)
    only = import_robomimic(tmp_path / "in.hdf5", tmp_path / "low.zarr", obs_keys=["object"])
    assert list(only.spec.obs) == ["object"]


def test_round_trip_hdf5_store_hdf5(tmp_path):
    write_robomimic(tmp_path / "in.hdf5")
    store = import_robomimic(tmp_path / "in.hdf5", tmp_path / "s.zarr")
    export_robomimic(store, tmp_path / "out.hdf5")
    with h5py.File(tmp_path / "in.hdf5", "r") as a, h5py.File(tmp_path / "out.hdf5", "r") as b:
        assert b["data"].attrs["total"] == a["data"].attrs["total"]
        assert json.loads(b["data"].attrs["env_args"]) == ENV_ARGS
        assert sorted(b["data"].keys()) == sorted(a["data"].keys())
        assert [n.decode() for n in b["mask/train"][()]] == ["demo_1", "demo_2", "demo_10"]
        for name in a["data"]:
            ga, gb = a["data"][name], b["data"][name]
            assert gb.attrs["num_samples"] == ga.attrs["num_samples"]
            for k in ["actions", "rewards", "dones", "states", "obs/robot0_eef_pos", "obs/object", "obs/agentview_image"]:
                np.testing.assert_allclose(gb[k][()], ga[k][()], rtol=1e-6, err_msg=f"{name}/{k}")
            T = ga.attrs["num_samples"]
            for k in ["robot0_eef_pos", "agentview_image"]:  # next_obs[t] = obs[t+1], last repeats
                obs = ga["obs"][k][()]
                np.testing.assert_array_equal(gb["next_obs"][k][()], obs[np.minimum(np.arange(T) + 1, T - 1)])
    again = import_robomimic(tmp_path / "out.hdf5", tmp_path / "s2.zarr")
    for e in range(store.n_episodes):
        x, y = store.episode(e), again.episode(e)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_export_of_a_native_store(tmp_path):
    spec = EnvSpec(obs={"cam": ObsKeySpec((4, 4, 3), "uint8", "rgb")}, action_dim=2, action_low=(-1.0, -1.0),
                   action_high=(1.0, 1.0), max_episode_steps=9, name="toy")
    rng = np.random.default_rng(0)
    episodes = [{"cam": rng.integers(0, 256, (T, 4, 4, 3), dtype=np.uint8), "action": rng.normal(size=(T, 2)).astype(np.float32),
                 "reward": np.zeros(T, np.float32), "success": np.zeros(T, bool), "done": np.arange(T) == T - 1} for T in (3, 5)]
    store = EpisodeStore.create(tmp_path / "s.zarr", spec)
    for ep in episodes:
        store.append_episode(ep)
    export_robomimic(tmp_path / "s.zarr", tmp_path / "out.hdf5")
    with h5py.File(tmp_path / "out.hdf5", "r") as f:
        assert sorted(f["data"].keys()) == ["demo_0", "demo_1"] and f["data"].attrs["total"] == store.n_steps == 8
        assert json.loads(f["data"].attrs["env_args"])["env_name"] == "toy"
        np.testing.assert_array_equal(f["data/demo_1/obs/cam"][()], episodes[1]["cam"])
        np.testing.assert_array_equal(f["data/demo_1/dones"][()], [0, 0, 0, 0, 1])
    with pytest.raises(DataError, match="already exists"):
        export_robomimic(store, tmp_path / "out.hdf5")


def test_import_errors(tmp_path):
    with pytest.raises(DataError, match="No robomimic file"):
        import_robomimic(tmp_path / "nope.hdf5", tmp_path / "s.zarr")
    (tmp_path / "bad.hdf5").write_text("not hdf5")
    with pytest.raises(DataError, match="not an HDF5 file"):
        import_robomimic(tmp_path / "bad.hdf5", tmp_path / "s.zarr")
    with h5py.File(tmp_path / "empty.hdf5", "w") as f:
        f.create_group("data")
    with pytest.raises(DataError, match="no data/demo_"):
        import_robomimic(tmp_path / "empty.hdf5", tmp_path / "s.zarr")
    write_robomimic(tmp_path / "in.hdf5")
    with pytest.raises(DataError, match="lacks observation"):
        import_robomimic(tmp_path / "in.hdf5", tmp_path / "s.zarr", obs_keys=["depth"])
    assert not (tmp_path / "s.zarr").exists() and not list(tmp_path.glob(".s.zarr*"))  # nothing half-done
    with h5py.File(tmp_path / "in.hdf5", "a") as f:
        f["data/demo_9/obs/object"][1, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        import_robomimic(tmp_path / "in.hdf5", tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()


def test_import_overwrite_refuses_a_directory_that_is_not_a_store(tmp_path):
    write_robomimic(src := tmp_path / "demo.hdf5")
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="is not a zarr store, so it will not be overwritten"):
        import_robomimic(src, target, overwrite=True)
    assert (target / "notes.txt").read_text() == "keep me"


def test_import_overwrite_replaces_a_store(tmp_path):
    write_robomimic(src := tmp_path / "demo.hdf5")
    import_robomimic(src, tmp_path / "s.zarr", obs_keys=["object"])
    store = import_robomimic(src, tmp_path / "s.zarr", overwrite=True)
    assert store.n_episodes == 4 and "agentview_image" in store.spec.obs


def test_export_overwrite_refuses_a_file_that_is_not_hdf5(tmp_path):
    write_robomimic(src := tmp_path / "demo.hdf5")
    store = import_robomimic(src, tmp_path / "s.zarr")
    target = tmp_path / "notes.hdf5"
    target.write_text("keep me")
    with pytest.raises(DataError, match="is not an HDF5 file"):
        export_robomimic(store, target, overwrite=True)
    assert target.read_text() == "keep me"
