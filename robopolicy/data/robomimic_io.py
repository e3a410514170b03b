"""robomimic HDF5 <-> episode store.

robomimic layout (one file)::

    data                 attrs: total (int), env_args (JSON string)
    data/demo_<i>        attrs: num_samples
        actions (T, A)  rewards (T,)  dones (T,)  states (T, S)  obs/<key> (T, ...)  next_obs/<key>
    mask/<filter>        array of demo names (bytes), e.g. train / valid splits

Mapping: demos become episodes in the order of their integer index (demo_10 after demo_9);
``states`` become the extra store key ``state_sim`` (float64 kept); ``env_args``, the demo names and
the masks go into the store's provenance so that an export writes them back. robomimic has no
success flag: on import ``success = rewards > 0`` (robosuite's sparse task reward).
``next_obs`` is not imported; on export it is derived as ``obs[t+1]`` (the last step repeats itself).
Both directions write to a temporary path and rename at the end, so a failure leaves nothing half-done.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from robopolicy.data.store import EpisodeStore, is_store_dir, remove_store
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import DataError

STATE_KEY = "state_sim"
_DEMO = re.compile(r"^demo_(\d+)$")


def sorted_demo_names(names: Sequence[str]) -> list[str]:
    """``demo_<i>`` names sorted by ``i`` (not lexically); other names are dropped."""
    return sorted((n for n in names if _DEMO.match(n)), key=lambda n: int(_DEMO.match(n).group(1)))


def _open_hdf5(path: Path) -> h5py.File:
    if not path.exists():
        raise DataError(f"No robomimic file at {path}; check the path.")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise DataError(f"{path} is not an HDF5 file; point to a robomimic dataset (.hdf5).") from None
    if "data" not in f or not sorted_demo_names(list(f["data"].keys())):
        f.close()
        raise DataError(f"{path} has no data/demo_<i> groups, so it is not a robomimic dataset; point to a robomimic .hdf5 file.")
    return f


def _spec_from_demo(demo: h5py.Group, obs_keys: list[str], image_keys: set[str], env_args: dict, horizon: int, action_bounds) -> EnvSpec:
    obs = {}
    for k in obs_keys:
        shape = tuple(demo["obs"][k].shape[1:])
        obs[k] = ObsKeySpec(shape, "uint8", "rgb") if k in image_keys else ObsKeySpec(shape, "float32", "lowdim")
    lo, hi = action_bounds
    control_hz = float(env_args.get("env_kwargs", {}).get("control_freq", 10.0))
    return EnvSpec(obs=obs, action_dim=len(lo), action_low=tuple(float(x) for x in lo), action_high=tuple(float(x) for x in hi), max_episode_steps=horizon,
                   control_hz=control_hz, name=str(env_args.get("env_name", "")))


def _check_obs_keys(demo: h5py.Group, name: str, obs_keys: list[str]) -> None:
    missing = [k for k in obs_keys if "obs" not in demo or k not in demo["obs"]]
    if missing:
        raise DataError(f"robomimic demo {name} lacks observation key(s) {missing}; choose obs_keys that every demo has.")


def _read_demo(demo: h5py.Group, name: str, obs_keys: list[str]) -> dict[str, np.ndarray]:
    """One robomimic demo -> episode dict in store keys (T rows each)."""
    if "actions" not in demo:
        raise DataError(f"robomimic demo {name} has no actions dataset; the file is incomplete.")
    actions = np.asarray(demo["actions"][()])
    T = len(actions)
    _check_obs_keys(demo, name, obs_keys)
    rewards = np.asarray(demo["rewards"][()], np.float32) if "rewards" in demo else np.zeros(T, np.float32)
    dones = np.asarray(demo["dones"][()]).astype(bool) if "dones" in demo else np.arange(T) == T - 1
    ep = {k: np.asarray(demo["obs"][k][()]) for k in obs_keys}
    ep.update(action=actions.astype(np.float32), reward=rewards, success=rewards > 0, done=dones)
    if "states" in demo:
        ep[STATE_KEY] = np.asarray(demo["states"][()])
    return ep


def import_robomimic(hdf5_path, store_path, obs_keys: Sequence[str] | None = None, image_keys: Sequence[str] | None = None,
                     overwrite: bool = False) -> EpisodeStore:
    """Convert a robomimic HDF5 file into an episode store and return it (opened read-only).

    obs_keys: observation keys to import (default: all of the first demo's). image_keys: which of
    them are camera images (default: the uint8 ones with shape (T, H, W, C)).
    """
    hdf5_path, store_path = Path(hdf5_path), Path(store_path)
    if store_path.exists() and not overwrite:
        raise DataError(f"{store_path} already exists; pass overwrite=True or choose another output path.")
    if store_path.exists() and not is_store_dir(store_path):
        raise DataError(f"{store_path} exists and is not a zarr store, so it will not be overwritten; choose another output path or remove it yourself.")
    with _open_hdf5(hdf5_path) as f:
        data = f["data"]
        names = sorted_demo_names(list(data.keys()))
        first = data[names[0]]
        keys = list(obs_keys) if obs_keys is not None else sorted(first["obs"].keys()) if "obs" in first else []
        if image_keys is None:
            image_keys = [k for k in keys if k in first.get("obs", {}) and first["obs"][k].dtype == np.uint8 and first["obs"][k].ndim == 4]
        _check_obs_keys(first, names[0], keys)
        try:
            env_args = json.loads(data.attrs.get("env_args", "{}"))
        except (TypeError, ValueError):
            raise DataError(f"{hdf5_path}: data.attrs['env_args'] is not a JSON string; fix or remove that attribute.") from None
        actions = [np.asarray(data[n]["actions"][()]) for n in names if "actions" in data[n]]
        all_actions = np.concatenate(actions) if actions else np.zeros((0, 1))
        bounds = (np.minimum(all_actions.min(0), -1.0), np.maximum(all_actions.max(0), 1.0))  # robomimic: [-1, 1]
        horizon = int(max(len(a) for a in actions)) if actions else 1
        spec = _spec_from_demo(first, keys, set(image_keys), env_args, horizon, bounds)
        masks = {k: [n.decode() if isinstance(n, bytes) else str(n) for n in f["mask"][k][()]] for k in f["mask"]} if "mask" in f else {}
        provenance = {"source": "robomimic", "hdf5": str(hdf5_path.resolve()), "env_args": env_args, "demo_names": names, "masks": masks}
        tmp = store_path.with_name(f".{store_path.name}.importing")
        remove_store(tmp)  # the remains of a killed import (refused if it is not a store)
        try:
            with EpisodeStore.create(tmp, spec, attrs=provenance) as store:
                for n in names:
                    store.append_episode(_read_demo(data[n], n, keys))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    remove_store(store_path)  # checked again, under the old store's lock
    os.replace(tmp, store_path)
    return EpisodeStore.open(store_path)


def export_robomimic(store: EpisodeStore | str | os.PathLike, hdf5_path, overwrite: bool = False) -> None:
    """Write every episode of ``store`` to ``hdf5_path`` in the robomimic layout (see module doc)."""
    store = store if isinstance(store, EpisodeStore) else EpisodeStore.open(store)
    hdf5_path = Path(hdf5_path)
    if hdf5_path.exists() and not overwrite:
        raise DataError(f"{hdf5_path} already exists; pass overwrite=True or choose another output path.")
    if hdf5_path.exists() and not (hdf5_path.is_file() and h5py.is_hdf5(hdf5_path)):
        raise DataError(f"{hdf5_path} exists and is not an HDF5 file, so it will not be overwritten; choose another output path or remove it yourself.")
    prov = store.attrs
    names = prov.get("demo_names") if len(prov.get("demo_names", [])) == store.n_episodes else None
    names = names or [f"demo_{i}" for i in range(store.n_episodes)]
    env_args = prov.get("env_args") or {"env_name": store.spec.name, "type": 2, "env_kwargs": {}}  # 2: robomimic's gym type
    obs_keys = list(store.spec.obs)
    tmp = hdf5_path.with_name(f".{hdf5_path.name}.exporting")
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            for name, ep in zip(names, store.iter_episodes()):
                _write_demo(data.create_group(name), ep, obs_keys, set(store.spec.rgb_keys))
            data.attrs["total"] = int(store.n_steps)
            data.attrs["env_args"] = json.dumps(env_args, indent=4)
            for filt, demos in prov.get("masks", {}).items():
                f[f"mask/{filt}"] = np.array(demos, dtype="S")
        os.replace(tmp, hdf5_path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_demo(g: h5py.Group, ep: dict[str, np.ndarray], obs_keys: list[str], image_keys: set[str]) -> None:
    T = len(ep["action"])
    g.attrs["num_samples"] = T
    g.create_dataset("actions", data=ep["action"])
    g.create_dataset("rewards", data=ep["reward"])
    g.create_dataset("dones", data=ep["done"].astype(np.int64))
    if STATE_KEY in ep:
        g.create_dataset("states", data=ep[STATE_KEY])
    nxt = np.minimum(np.arange(T) + 1, T - 1)
    for k in obs_keys:
        opts = {"compression": "gzip"} if k in image_keys else {}
        g.create_dataset(f"obs/{k}", data=ep[k], **opts)
        g.create_dataset(f"next_obs/{k}", data=ep[k][nxt], **opts)
