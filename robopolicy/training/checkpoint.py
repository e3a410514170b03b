"""Checkpoint folders: atomic writes, latest/best pointers, pruning, RNG capture and safe loading.

Layout (docs/CONTRACTS.md)::

    run_dir/checkpoints/step_<N>/  model.safetensors  raw.safetensors (EMA on)  config.yaml
                                   spec.json  train_state.pt  meta.json
    run_dir/checkpoints/latest.json   {"name": "step_<N>", "step": N}   written last, atomically
    run_dir/checkpoints/best.json     {"name", "step", "metric", "value"}

A folder is filled under a temporary name, every file fsynced, then renamed into place; only then
does ``latest.json`` move. A kill at any moment leaves ``latest.json`` naming a complete folder.
``train_state.pt`` holds only tensors and primitives, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from robopolicy.errors import CheckpointError
from robopolicy.utils import atomic_write_json

STEP_RE = re.compile(r"^step_(\d+)$")


# -- RNG state as tensors / primitives ------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    """torch CPU (+CUDA), numpy and python RNG states, converted to tensors and primitives."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_state[0]), "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss_next": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class preserved_rng:
    """Context manager: code inside may draw random numbers without changing the training stream."""

    def __enter__(self):
        self._state = capture_rng_state()

    def __exit__(self, *exc):
        restore_rng_state(self._state)
        return False


# -- writing --------------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def state_dict_for_safetensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def write_checkpoint(ckpt_root: Path, step: int, files: Mapping[str, Any]) -> Path:
    """Write ``files`` (name -> state dict / text / json-able / torch object) as ``step_<step>`` atomically.

    ``*.safetensors`` values are tensor dicts, ``*.pt`` values torch-saveable primitives, ``*.json``
    JSON-able objects, ``*.yaml`` text. Returns the final folder.
    """
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step}"
    tmp = ckpt_root / f".tmp_step_{step}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, value in files.items():
        path = tmp / name
        if name.endswith(".safetensors"):
            save_file(value, str(path), metadata={"format": "pt"})
        elif name.endswith(".pt"):
            torch.save(value, path)
        elif name.endswith(".json"):
            path.write_text(json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n")
        else:
            path.write_text(str(value))
        _fsync_file(path)
    _fsync_dir(tmp)
    if final.exists():  # a folder left by an earlier run that died before moving latest.json
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(ckpt_root)
    return final


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.generic,)):
        return o.item()
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def set_latest(ckpt_root: Path, step: int) -> None:
    atomic_write_json(ckpt_root / "latest.json", {"name": f"step_{step}", "step": int(step)})


def read_pointer(ckpt_root: Path, name: str) -> dict | None:
    path = ckpt_root / name
    if not path.exists():
        return None
    return json.loads(path.read_text())


def prune(ckpt_root: Path, keep_last: int, protect: set[str]) -> None:
    """Delete all but the newest ``keep_last`` complete step folders, never one named in ``protect``,
    and any temporary folder left behind by a killed save."""
    for p in ckpt_root.glob(".tmp_step_*"):
        shutil.rmtree(p, ignore_errors=True)
    steps = sorted((int(m.group(1)), p) for p in ckpt_root.iterdir() if (m := STEP_RE.match(p.name)))
    keep = {p.name for _, p in steps[-max(keep_last, 1):]} | protect
    for _, p in steps:
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)


# -- reading --------------------------------------------------------------------------------------
def find_checkpoint(run_dir: str | os.PathLike, checkpoint: str = "last") -> Path:
    """Resolve ``last``/``latest``, ``best``, ``step_N`` or a folder path to a complete checkpoint folder."""
    cand = Path(checkpoint)
    if checkpoint not in ("last", "latest", "best") and (cand / "model.safetensors").is_file():
        return cand
    run_dir = Path(run_dir)
    root = run_dir / "checkpoints"
    if checkpoint in ("last", "latest", "best"):
        ptr = read_pointer(root, "best.json" if checkpoint == "best" else "latest.json")
        if ptr is None:
            if checkpoint == "best" and read_pointer(root, "latest.json") is not None:
                raise CheckpointError(f"Run {str(run_dir)!r} has no best checkpoint (no validation or evaluation ran); use checkpoint=last.")
            raise CheckpointError(f"Run directory {str(run_dir)!r} has no checkpoint; train first with robopolicy-train run_dir={run_dir}.")
        folder = root / ptr["name"]
    else:
        folder = root / checkpoint
    if not (folder / "model.safetensors").is_file() or not (folder / "meta.json").is_file():
        avail = sorted(p.name for p in root.glob("step_*")) if root.exists() else []
        raise CheckpointError(f"Checkpoint {str(folder)!r} does not exist or is incomplete; pick one of {avail or 'none (train first)'}.")
    return folder


def load_train_state(folder: Path, map_location: str | torch.device = "cpu") -> dict:
    return torch.load(folder / "train_state.pt", map_location=map_location, weights_only=True)


def load_weights(model: nn.Module, path: str | os.PathLike, what: str = "model", state: dict | None = None) -> None:
    """Load a safetensors file (or its already-read ``state``) into ``model`` strictly.

    A key or shape mismatch -> CheckpointError naming the first differences."""
    state = load_file(str(path)) if state is None else state
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
        if shapes:
            k = shapes[0]
            parts.append(f"shape of {k!r} is {tuple(state[k].shape)} in the file but {tuple(own[k].shape)} in the {what}")
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match the config it is loaded into ({'; '.join(parts)}); "
            "load it with the config saved beside it, overriding only sampler settings."
        )
    model.load_state_dict(state, strict=True)
