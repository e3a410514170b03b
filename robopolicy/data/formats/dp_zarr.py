"""Read a Diffusion Policy replay buffer (zarr v2: ``data/<key>``, ``meta/episode_ends``, no spec).

A folder, or a ``.zarr.zip`` with the group at its root.

Mapping: ``data/action`` -> ``action``; arrays of shape ``(N, H, W, 3)`` are cameras (uint8; float
arrays holding whole numbers 0-255, as in DP's Push-T ``img``, are converted); every other array is
a low-dimensional observation (float32) unless named in ``extra_keys`` (kept in its own dtype, not
an observation). ``rename`` / ``drop`` apply to the array names. The buffer records no frame rate,
reward or success: the rate comes from ``fps`` and the flags are derived (see ``derive_step_flags``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import zarr

from robopolicy.data.formats.common import (
    Source,
    action_bounds,
    as_images,
    derive_step_flags,
)
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import DataError


def _open(path: Path):
    """The buffer's root group: a zarr folder, or a ``.zip`` holding one at its root (``ReplayBuffer.save_to_path``)."""
    try:
        if path.is_file():
            from zarr.storage import ZipStore

            return zarr.open_group(ZipStore(path, mode="r"), mode="r")
        return zarr.open_group(str(path), mode="r")
    except Exception as e:  # zarr raises several types for a folder that is no group
        raise DataError(f"{path} is not a readable zarr group ({type(e).__name__}); point to a Diffusion Policy replay buffer.") from None


def is_dp_zarr(path: Path) -> bool:
    """A zarr group with data/ and meta/episode_ends and no env_spec attribute (ours have one)."""
    if path.is_dir() and not ((path / ".zgroup").is_file() or (path / "zarr.json").is_file()):
        return False
    group = _open(path)
    return "data" in group and "meta" in group and "episode_ends" in group["meta"] and "env_spec" not in group.attrs


def _rows(root: Path, name: str, array, start: int, stop: int) -> np.ndarray:
    try:
        return np.asarray(array[start:stop])
    except Exception as e:  # numcodecs/zarr raise many types for a codec they lack or a damaged chunk
        raise DataError(f"{root}/data/{name} cannot be decoded ({type(e).__name__}: {str(e).splitlines()[0][:120]}); if it uses an "
                        "imagecodecs codec (e.g. jpeg2k), pip install imagecodecs, otherwise restore the buffer.") from None


def read_dp_zarr(root: str | Path, fps: float, rename: Mapping[str, str] | None = None, drop: Sequence[str] = (),
                 extra_keys: Sequence[str] = (), success_rule: str = "last_step") -> Source:
    root = Path(root)
    group = _open(root)
    rename = dict(rename or {})
    data = group["data"]
    names = sorted(k for k, _ in data.arrays())
    unknown = [k for k in set(rename) | set(drop) if k not in names]
    if unknown:
        raise DataError(f"The arrays {sorted(unknown)} named in rename/drop are not in {root}/data (it has {names}); fix the names.")
    if "action" not in names or "action" in drop:
        raise DataError(f"{root}/data has no action array (it has {names}); a policy needs actions, so this buffer cannot be imported.")
    ends = np.asarray(group["meta/episode_ends"][:], dtype=np.int64)
    if len(ends) == 0:
        raise DataError(f"{root}/meta/episode_ends is empty; import a buffer with at least one episode.")
    if ends[0] <= 0 or np.any(np.diff(ends) <= 0):
        raise DataError(f"{root}/meta/episode_ends is not strictly increasing; the buffer is corrupt, rebuild it.")
    arrays = {k: data[k] for k in names if k not in set(drop)}
    for k, a in arrays.items():
        if a.shape[0] < ends[-1]:
            raise DataError(f"{root}/data/{k} has {a.shape[0]} rows but meta/episode_ends reaches {int(ends[-1])} (mismatched lengths); rebuild the buffer.")
    keys = {k: rename.get(k, k) for k in arrays}
    if len(set(keys.values())) != len(keys):
        raise DataError(f"Two arrays of {root} map to the same store key ({sorted(keys.values())}); pick distinct names with rename.")
    cameras = [k for k, a in arrays.items() if a.ndim == 4 and a.shape[-1] == 3]
    obs = {}
    for k, a in arrays.items():
        if k in cameras:
            obs[keys[k]] = ObsKeySpec(tuple(a.shape[1:]), "uint8", "rgb")
        elif k != "action" and k not in set(extra_keys):
            obs[keys[k]] = ObsKeySpec(tuple(a.shape[1:]), "float32", "lowdim")
    actions = _rows(root, "action", arrays["action"], 0, int(ends[-1])).astype(np.float32)
    if actions.ndim != 2:
        raise DataError(f"{root}/data/action has shape {actions.shape}, not (N, A); fix the buffer.")
    low, high = action_bounds(actions)
    lengths = np.diff(np.concatenate([[0], ends]))
    spec = EnvSpec(obs=obs, action_dim=actions.shape[1], action_low=low, action_high=high, max_episode_steps=int(lengths.max()),
                   control_hz=float(fps), name=root.stem)
    notes: set[str] = {f"the buffer records no frame rate: control_hz = {float(fps):g} (set fps=...)"}

    def episodes() -> Iterator[dict[str, np.ndarray]]:
        start = 0
        for stop in ends:
            ep = {}
            for k, a in arrays.items():
                rows = _rows(root, k, a, start, int(stop))
                ep[keys[k]] = as_images(k, rows, str(root)) if k in cameras else (rows.astype(np.float32) if keys[k] in obs or k == "action" else rows)
            derive_step_flags(ep, int(stop - start), success_rule, notes, "the replay buffer")
            yield ep
            start = int(stop)

    provenance = {"source": "dp_zarr", "path": str(root.resolve()), "arrays": names, "extra_keys": list(extra_keys)}
    return Source("dp_zarr", str(root), spec, len(ends), int(ends[-1]), float(fps), episodes, provenance, notes)
