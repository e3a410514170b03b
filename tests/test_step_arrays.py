"""The store read once at training start (robopolicy.data.step_arrays): datasets and the normalizer fit share it."""

import numpy as np
import pytest
import torch

from robopolicy.data import EpisodeStore, WindowDataset, fit_normalizer
from robopolicy.data.step_arrays import StepArrays
from robopolicy.errors import DataError
from robopolicy.value.dataset import TransitionDataset

from test_windows import LENGTHS, SPEC, episode


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("steps") / "s.zarr"
    store = EpisodeStore.create(path, SPEC)
    for e, T in enumerate(LENGTHS):
        ep = episode(e, T)
        ep["success"][-1:] = e % 2 == 0
        store.append_episode(ep)
    return path


def _count_reads(monkeypatch) -> dict[str, int]:
    reads: dict[str, int] = {}
    real = EpisodeStore.get

    def counting(self, key, sl=None):
        reads[key] = reads.get(key, 0) + 1
        return real(self, key, sl)

    monkeypatch.setattr(EpisodeStore, "get", counting)
    return reads


def test_training_start_reads_each_key_of_the_store_once(store_path, monkeypatch):
    store = EpisodeStore.open(store_path)
    reads = _count_reads(monkeypatch)
    steps = StepArrays(store, ["pos", "cam", "action"], read="memory")
    fit_normalizer(steps, ["pos"], episodes=[0, 2])
    train, val = WindowDataset(steps, ["pos", "cam"], episodes=[0, 2]), WindowDataset(steps, ["pos", "cam"], episodes=[1])
    [train[i] for i in range(len(train))], [val[i] for i in range(len(val))]
    assert reads == {"pos": 1, "cam": 1, "action": 1}


def test_normalizer_fit_on_the_arrays_equals_the_fit_on_the_store(store_path):
    store = EpisodeStore.open(store_path)
    from_arrays = fit_normalizer(StepArrays(store, ["pos", "action"]), ["pos"], mode="meanstd", episodes=[1, 2])
    from_store = fit_normalizer(store, ["pos"], mode="meanstd", episodes=[1, 2])
    for name, buf in from_store.state_dict().items():
        torch.testing.assert_close(from_arrays.state_dict()[name], buf, rtol=0, atol=0)


@pytest.mark.parametrize("read", ["memory", "lazy"])
def test_windows_over_shared_arrays_equal_windows_read_from_the_store(store_path, read):
    shared = WindowDataset(StepArrays(store_path, ["pos", "cam", "action"], read=read), ["pos", "cam"], 2, 4, episodes=[1, 2])
    own = WindowDataset(store_path, ["pos", "cam"], 2, 4, episodes=[1, 2])
    for i in range(len(own)):
        a, b = shared[i], own[i]
        for k in ("pos", "cam"):
            assert torch.equal(a["obs"][k], b["obs"][k]), (i, k)
        assert torch.equal(a["action"], b["action"]), i


def test_transitions_over_shared_arrays_equal_transitions_read_from_the_store(store_path):
    kw = dict(obs_horizon=2, chunk_len=2, n_step=2, reward_horizon=2, gamma=0.9, episodes=[0, 2])
    shared = TransitionDataset(StepArrays(store_path, ["pos", "action", "success"]), ["pos"], **kw)
    own = TransitionDataset(EpisodeStore.open(store_path), ["pos"], **kw)
    assert len(shared) == len(own)
    for i in range(len(own)):
        a, b = shared[i], own[i]
        for k in ("action", "reward", "discount", "done", "next_action", "mc_return"):
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{i} {k}")
        for k in ("obs", "next_obs"):
            np.testing.assert_array_equal(a[k]["pos"], b[k]["pos"], err_msg=f"{i} {k}")


def test_a_dataset_key_that_was_not_read_is_a_data_error(store_path):
    with pytest.raises(DataError, match="were not read"):
        WindowDataset(StepArrays(store_path, ["pos", "action"]), ["pos", "cam"])
