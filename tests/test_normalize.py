"""Normalizer: modes, guards, round trip, safetensors save/load, fitting from a store."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from robopolicy.data import EpisodeStore, Normalizer, fit_normalizer
from robopolicy.data.normalize import buffer_name
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import ConfigError, DataError


def _data(rng):
    x = rng.normal(3.0, 2.0, size=(500, 4)).astype(np.float32)
    x[:, 2] = 7.0  # constant feature: range and std are zero
    return {"robot/eef.pos": x, "action": rng.uniform(-3, 5, size=(500, 2)), "reward": rng.normal(size=500)}


@pytest.mark.parametrize("mode", ["minmax", "meanstd", "identity"])
def test_round_trip_and_ranges(mode):
    data = _data(np.random.default_rng(0))
    norm = Normalizer.fit(data, {k: mode for k in data})
    for k, v in data.items():
        x = torch.as_tensor(v, dtype=torch.float32)
        y = norm.normalize(k, x)
        assert y.shape == x.shape and torch.all(torch.isfinite(y))
        torch.testing.assert_close(norm.unnormalize(k, y), x, rtol=1e-5, atol=1e-4)
        if mode == "minmax":
            assert y.min() >= -1 - 1e-5 and y.max() <= 1 + 1e-5
            if k == "action":
                torch.testing.assert_close(y.amin(0), -torch.ones(2))
                torch.testing.assert_close(y.amax(0), torch.ones(2))
        if mode == "meanstd" and k == "action":
            torch.testing.assert_close(y.mean(0), torch.zeros(2), atol=1e-4, rtol=0)
            torch.testing.assert_close(y.std(0, unbiased=False), torch.ones(2), atol=1e-4, rtol=0)
        if mode == "identity":
            torch.testing.assert_close(y, x)
    if mode != "identity":  # the constant feature maps to 0, not to inf/nan
        y = norm.normalize("robot/eef.pos", torch.as_tensor(data["robot/eef.pos"]))
        assert torch.all(y[:, 2] == 0)


def test_broadcasts_over_leading_dims():
    data = _data(np.random.default_rng(1))
    norm = Normalizer.fit(data, {k: "minmax" for k in data})
    x = torch.as_tensor(data["action"][:24], dtype=torch.float32).reshape(2, 3, 4, 2)
    y = norm.normalize("action", x)
    torch.testing.assert_close(y.reshape(24, 2), norm.normalize("action", x.reshape(24, 2)))


def test_state_dict_through_safetensors(tmp_path):
    data = _data(np.random.default_rng(2))
    norm = Normalizer.fit(data, {"robot/eef.pos": "meanstd", "action": "minmax", "reward": "identity"})
    model = torch.nn.Sequential()
    model.add_module("normalizer", norm)
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    fresh = Normalizer.empty({"robot/eef.pos": (4,), "action": (2,), "reward": ()})
    x = torch.as_tensor(data["robot/eef.pos"])
    assert not torch.allclose(fresh.normalize("robot/eef.pos", x), norm.normalize("robot/eef.pos", x))
    loaded = torch.nn.Sequential()
    loaded.add_module("normalizer", fresh)
    loaded.load_state_dict(load_file(tmp_path / "model.safetensors"))
    for k in data:
        v = torch.as_tensor(data[k], dtype=torch.float32)
        torch.testing.assert_close(fresh.normalize(k, v), norm.normalize(k, v))


def test_buffer_names_are_injective_and_valid():
    keys = ["a.b", "a/b", "a_b", "a_db", "a__b"]
    names = [buffer_name(k) for k in keys]
    assert len(set(names)) == len(keys) and all("." not in n and "/" not in n for n in names)
    norm = Normalizer.empty({k: (1,) for k in keys})
    assert len(norm.state_dict()) == 2 * len(keys)


def test_errors():
    with pytest.raises(ConfigError, match="Unknown normalisation mode"):
        Normalizer.fit({"a": np.zeros((3, 1))}, {"a": "zscore"})
    with pytest.raises(ConfigError, match="No normalisation mode"):
        Normalizer.fit({"a": np.zeros((3, 1))}, {})
    with pytest.raises(DataError, match="NaN"):
        Normalizer.fit({"a": np.array([[np.nan]])}, {"a": "minmax"})
    with pytest.raises(DataError, match="no statistics"):
        Normalizer.empty({"a": (1,)}).normalize("b", torch.zeros(1))


def test_fit_normalizer_from_store_and_spec(tmp_path):
    spec = EnvSpec(
        obs={"state": ObsKeySpec((2,)), "cam": ObsKeySpec((4, 4, 3), "uint8", "rgb")},
        action_dim=1, action_low=(-1.0,), action_high=(1.0,), max_episode_steps=10,
    )
    store = EpisodeStore.create(tmp_path / "s.zarr", spec)
    for i, T in enumerate([3, 4]):
        store.append_episode({
            "state": np.full((T, 2), float(i), np.float32) + np.arange(T)[:, None],
            "cam": np.zeros((T, 4, 4, 3), np.uint8),
            "action": np.linspace(-2, 2, T, dtype=np.float32)[:, None] * (i + 1),
            "reward": np.zeros(T, np.float32), "success": np.zeros(T, bool), "done": np.zeros(T, bool),
        })
    norm = fit_normalizer(store, ["state"], mode="minmax")
    y = norm.normalize("state", torch.as_tensor(store.get("state")))
    assert y.min() == -1 and y.max() == 1  # state spans 0..4 over both episodes
    first = fit_normalizer(store, ["state"], episodes=[0])  # statistics of episode 0 only (0..2)
    torch.testing.assert_close(first.normalize("state", torch.tensor([[2.0, 2.0]])), torch.tensor([[1.0, 1.0]]))
    empty = Normalizer.empty_for_spec(spec, ["state", "cam"])
    empty.load_state_dict(norm.state_dict())
    assert sorted(empty.keys) == ["action", "state"]
    with pytest.raises(ConfigError, match="Image key"):
        fit_normalizer(store, ["cam"])
