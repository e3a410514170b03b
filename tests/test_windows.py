"""Windows: padding at both edges, every start, goal relabelling, split by episode, DataLoader workers."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from robopolicy.data import EpisodeStore, WindowDataset, split_episodes
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import ConfigError, DataError

SPEC = EnvSpec(
    obs={"pos": ObsKeySpec((1,)), "cam": ObsKeySpec((4, 4, 3), "uint8", "rgb")},
    action_dim=1, action_low=(-100.0,), action_high=(100.0,), max_episode_steps=20,
)
LENGTHS = [5, 3, 8]


def episode(e: int, T: int) -> dict:
    """Values encode (episode, step): pos = 100 e + t, action = -(100 e + t), cam filled with 10 e + t."""
    t = np.arange(T)
    return {
        "pos": (100 * e + t).astype(np.float32)[:, None],
        "cam": np.broadcast_to((10 * e + t).astype(np.uint8)[:, None, None, None], (T, 4, 4, 3)).copy(),
        "action": -(100 * e + t).astype(np.float32)[:, None],
        "reward": np.zeros(T, np.float32), "success": np.zeros(T, bool), "done": t == T - 1,
    }


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "s.zarr"
    store = EpisodeStore.create(path, SPEC)
    for e, T in enumerate(LENGTHS):
        store.append_episode(episode(e, T))
    return path


@pytest.mark.parametrize("cache_images", [True, False])
def test_padding_at_both_edges(store_path, cache_images):
    ds = WindowDataset(store_path, ["pos", "cam"], obs_horizon=2, action_horizon=4, cache_images=cache_images)
    assert len(ds) == sum(LENGTHS)  # one window per step
    first = ds[0]  # episode 0, t = 0: window starts at t=-1, repeats step 0
    np.testing.assert_array_equal(first["obs"]["pos"][:, 0], [0, 0])
    np.testing.assert_array_equal(first["action"][:, 0], [0, 0, -1, -2])
    np.testing.assert_array_equal(first["obs"]["cam"][:, 0, 0, 0], [0, 0])
    last = ds[LENGTHS[0] - 1]  # episode 0, t = 4: actions 3, 4, then the last one repeated
    np.testing.assert_array_equal(last["obs"]["pos"][:, 0], [3, 4])
    np.testing.assert_array_equal(last["action"][:, 0], [-3, -4, -4, -4])
    short = ds[LENGTHS[0] + 2]  # episode 1 (length 3), t = 2: both ends padded inside one window
    np.testing.assert_array_equal(short["obs"]["pos"][:, 0], [101, 102])
    np.testing.assert_array_equal(short["obs"]["cam"][:, 0, 0, 0], [11, 12])
    assert short["action"].dtype == torch.float32 and short["obs"]["cam"].dtype == torch.uint8
    assert short["obs"]["cam"].shape == (2, 4, 4, 3) and short["action"].shape == (4, 1)


def test_every_window_stays_in_its_episode(store_path):
    ds = WindowDataset(store_path, ["pos"], obs_horizon=3, action_horizon=6)
    seen = set()
    for i in range(len(ds)):
        item = ds[i]
        pos, act = item["obs"]["pos"][:, 0].numpy(), -item["action"][:, 0].numpy()
        e, t = int(pos[-1]) // 100, int(pos[-1]) % 100
        seen.add((e, t))
        assert np.all(pos // 100 == e) and np.all(act // 100 == e)  # never crosses an episode
        np.testing.assert_array_equal(act[:3], pos)  # obs[t] comes with action[t]
        np.testing.assert_array_equal(np.diff(act) >= 0, True)
    assert seen == {(e, t) for e, T in enumerate(LENGTHS) for t in range(T)}


def test_goal_relabelling(store_path):
    ds = WindowDataset(store_path, ["pos"], obs_horizon=2, action_horizon=4, goal_keys=["pos", "cam"], goal_horizon=(1, 3), seed=5)
    offsets = []
    for i in range(len(ds)):
        item = ds[i]
        cur = int(item["obs"]["pos"][-1, 0])
        goal = int(item["goal"]["pos"][0])
        e, t = cur // 100, cur % 100
        assert goal // 100 == e  # same episode
        last = LENGTHS[e] - 1
        assert min(t + 1, last) <= goal % 100 <= min(t + 3, last)  # within the horizon, clamped
        assert int(item["goal"]["cam"][0, 0, 0]) == 10 * e + goal % 100  # all goal keys from one step
        if t + 3 <= last:
            offsets.append(goal % 100 - t)
    assert set(offsets) == {1, 2, 3}
    again = WindowDataset(store_path, ["pos"], goal_keys=["pos"], goal_horizon=(1, 3), seed=5)
    draws = [int(again[i]["goal"]["pos"][0]) for i in range(len(ds))]
    assert draws == [int(ds[i]["goal"]["pos"][0]) for i in range(len(ds))]  # seeded
    again.set_epoch(1)
    assert draws != [int(again[i]["goal"]["pos"][0]) for i in range(len(ds))]


def test_split_by_episode(store_path):
    train, val = split_episodes(10, 0.3, seed=0)
    assert len(val) == 3 and len(train) == 7 and not set(train) & set(val) and set(train) | set(val) == set(range(10))
    np.testing.assert_array_equal(split_episodes(10, 0.3, seed=0)[1], val)
    assert not np.array_equal(split_episodes(10, 0.3, seed=1)[1], val)
    assert len(split_episodes(3, 0.01, seed=0)[1]) == 1 and len(split_episodes(5, 0.0, seed=0)[1]) == 0
    with pytest.raises(ConfigError):
        split_episodes(10, 1.0, seed=0)
    train, val = split_episodes(3, 0.34, seed=2)
    ds_train = WindowDataset(store_path, ["pos"], episodes=train)
    ds_val = WindowDataset(store_path, ["pos"], episodes=val)
    eps = lambda ds: {int(ds[i]["obs"]["pos"][-1, 0]) // 100 for i in range(len(ds))}
    assert eps(ds_train) == set(train.tolist()) and eps(ds_val) == set(val.tolist())
    assert len(ds_train) + len(ds_val) == sum(LENGTHS)


@pytest.mark.parametrize("cache_images", [True, False])
def test_dataloader_with_workers(store_path, cache_images):
    ds = WindowDataset(store_path, ["pos", "cam"], obs_horizon=2, action_horizon=4, cache_images=cache_images)
    loader = DataLoader(ds, batch_size=4, shuffle=False, num_workers=2)
    batches = list(loader)
    pos = torch.cat([b["obs"]["pos"] for b in batches])
    cams = torch.cat([b["obs"]["cam"] for b in batches])
    assert pos.shape == (sum(LENGTHS), 2, 1) and cams.shape == (sum(LENGTHS), 2, 4, 4, 3)
    np.testing.assert_array_equal(pos[:, :, 0].numpy() % 100 % 10, cams[:, :, 0, 0, 0].numpy() % 10)
    np.testing.assert_array_equal(pos.numpy(), torch.stack([ds[i]["obs"]["pos"] for i in range(len(ds))]).numpy())


def test_bad_arguments(store_path):
    with pytest.raises(DataError, match="no key"):
        WindowDataset(store_path, ["depth"])
    with pytest.raises(DataError, match="No episodes"):
        WindowDataset(store_path, ["pos"], episodes=[])
    with pytest.raises(DataError, match="Episode indices"):
        WindowDataset(store_path, ["pos"], episodes=[7])
    with pytest.raises(ConfigError):
        WindowDataset(store_path, ["pos"], obs_horizon=0)
    with pytest.raises(ConfigError):
        WindowDataset(store_path, ["pos"], goal_keys=["pos"], goal_horizon=(5, 2))


@pytest.fixture(scope="module")
def long_store_path(tmp_path_factory):
    """60 steps: several zarr image chunks, so a small cache must evict."""
    path = tmp_path_factory.mktemp("wl") / "s.zarr"
    store = EpisodeStore.create(path, SPEC)
    for e, T in enumerate([20, 17, 23]):
        store.append_episode(episode(e, T))
    assert store.array("cam").chunks[0] < store.n_steps
    return path


def test_lazy_reads_equal_memory_reads(long_store_path):
    # A cache of one chunk forces evictions: streaming must still give the same windows.
    kw = {"obs_keys": ["pos", "cam"], "obs_horizon": 3, "action_horizon": 4, "goal_keys": ["cam"], "seed": 5}
    mem = WindowDataset(long_store_path, read="memory", **kw)
    lazy = WindowDataset(long_store_path, read="lazy", cache_bytes=1, **kw)
    assert lazy.cache_images is False
    for i in range(len(mem)):
        a, b = mem[i], lazy[i]
        torch.testing.assert_close(a["obs"]["cam"], b["obs"]["cam"])
        torch.testing.assert_close(a["goal"]["cam"], b["goal"]["cam"])


def test_lazy_cache_stays_bounded(long_store_path):
    lazy = WindowDataset(long_store_path, obs_keys=["cam"], read="lazy", cache_bytes=1)
    for i in range(len(lazy)):
        lazy[i]
    cache = lazy.arrays._caches["cam"]
    assert len(cache._chunks) == 1 and cache.misses > 1


def test_unknown_read_mode(store_path):
    with pytest.raises(ConfigError, match="read="):
        WindowDataset(store_path, obs_keys=["cam"], read="mmap")
