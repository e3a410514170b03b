"""Checkpoint folders: atomic writes, latest/best pointers, pruning, RNG capture and safe loading.

Layout (docs/CONTRACTS.md)::

    run_dir/checkpoints/step_<N>/  model.safetensors  raw.safetensors (EMA on)  config.yaml
                                   spec.json  train_state.pt  meta.json
    run_dir/checkpoints/latest.json   {"name": "step_<N>", "step": N}   written last, atomically
    run_dir/checkpoints/best.json     {"name", "step", "metric", "value"}

A folder is filled under a temporary name, every file fsynced, then renamed into place; only then
does ``latest.json`` move. A kill at any moment leaves ``latest.json`` naming a complete folder.
``train_state.pt`` holds only tensors and primitives, so it loads with ``weights_only=True``.

A checkpoint is data: ``meta.json`` records the sha256 of every other file (``"sha256": {name:
hex}``), verified before a weights or train-state file is read; weights must be finite; the
pointers may only name a ``step_<N>`` folder that really lies inside ``checkpoints/`` (no ``..``,
absolute paths or symlinks out). Each of these failures is a one-sentence CheckpointError.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from robopolicy.errors import CheckpointError
from robopolicy.utils import atomic_write_json

STEP_RE = re.compile(r"^step_(\d+)$")
META = "meta.json"


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
    # meta.json goes last: it records the checksum of every other file.
    ordered = [(n, v) for n, v in files.items() if n != META] + [(n, v) for n, v in files.items() if n == META]
    digests: dict[str, str] = {}
    for name, value in ordered:
        path = tmp / name
        if name == META:
            value = {**dict(value), "sha256": dict(digests)}
        if name.endswith(".safetensors"):
            save_file(value, str(path), metadata={"format": "pt"})
        elif name.endswith(".pt"):
            torch.save(value, path)
        elif name.endswith(".json"):
            path.write_text(json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n")
        else:
            path.write_text(str(value))
        _fsync_file(path)
        if name != META:
            digests[name] = file_sha256(path)
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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_pointer(ckpt_root: Path, name: str) -> dict | None:
    """``latest.json`` / ``best.json`` as a dict (None when absent); its ``name`` must be ``step_<N>``."""
    path = Path(ckpt_root) / name
    if not path.exists():
        return None
    try:
        ptr = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{str(path)!r} is not valid JSON; delete it (the newest complete step_<N> folder is then "
                              "picked by hand with checkpoint=step_<N>).") from None
    if not isinstance(ptr, dict) or not isinstance(ptr.get("name"), str) or not STEP_RE.match(ptr["name"]):
        raise CheckpointError(f"{str(path)!r} does not name a step_<N> folder of this run (it says {ptr!r:.80}); "
                              "delete it and pass checkpoint=step_<N>.")
    return ptr


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
def _inside(root: Path, folder: Path) -> Path:
    """``folder`` (a ``step_<N>`` name under ``root``) if it and its files really lie inside ``root``."""
    real_root = root.resolve()
    real = folder.resolve()
    if folder.is_symlink() or real.parent != real_root:
        raise CheckpointError(f"Checkpoint {str(folder)!r} points outside {str(root)!r}; a run's checkpoints must be real "
                              "folders inside its checkpoints/ folder, so copy the run instead of linking it.")
    for f in folder.iterdir() if folder.is_dir() else ():
        if f.is_symlink() and f.resolve().parent != real:
            raise CheckpointError(f"{str(f)!r} is a link to a file outside its checkpoint folder; copy the file in instead.")
    return folder


def find_checkpoint(run_dir: str | os.PathLike, checkpoint: str = "last") -> Path:
    """Resolve ``last``/``latest``, ``best``, ``step_N`` or a folder path to a complete checkpoint folder.

    ``last``/``best``/``step_N`` stay inside ``run_dir/checkpoints`` (a pointer naming anything else is a
    CheckpointError); an explicit folder path is the caller's own choice and is used as given.
    """
    checkpoint = str(checkpoint)
    run_dir = Path(run_dir)
    root = run_dir / "checkpoints"
    if checkpoint in ("last", "latest", "best"):
        ptr = read_pointer(root, "best.json" if checkpoint == "best" else "latest.json")
        if ptr is None:
            if checkpoint == "best" and read_pointer(root, "latest.json") is not None:
                raise CheckpointError(f"Run {str(run_dir)!r} has no best checkpoint (no validation or evaluation ran); use checkpoint=last.")
            raise CheckpointError(f"Run directory {str(run_dir)!r} has no checkpoint; train first with robopolicy-train run_dir={run_dir}.")
        folder = _inside(root, root / ptr["name"])
    elif STEP_RE.match(checkpoint):
        folder = _inside(root, root / checkpoint)
    elif (Path(checkpoint) / "model.safetensors").is_file():
        folder = Path(checkpoint)
    else:
        folder = root / checkpoint
    if not (folder / "model.safetensors").is_file() or not (folder / META).is_file():
        avail = sorted(p.name for p in root.glob("step_*")) if root.exists() else []
        raise CheckpointError(f"Checkpoint {str(folder)!r} does not exist or is incomplete; pick one of {avail or 'none (train first)'}.")
    return folder


def read_meta(folder: Path) -> dict:
    path = Path(folder) / META
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"Checkpoint {str(folder)!r} has no meta.json; it was not written by robopolicy, retrain it.") from None
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{str(path)!r} is not valid JSON; the checkpoint is damaged, load another one (checkpoint=step_<N>).") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{str(path)!r} is not a JSON object; the checkpoint is damaged, load another one (checkpoint=step_<N>).")
    return meta


def verify_file(path: str | os.PathLike) -> None:
    """Compare ``path`` with the sha256 its folder's meta.json records (CheckpointError when they differ).

    Checkpoints written before checksums existed have none: a warning, then the file is used.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} is missing; the checkpoint is incomplete, load another one (checkpoint=step_<N>).")
    if not (path.parent / META).is_file():
        return  # a bare weights file outside a checkpoint folder (tests, exports): nothing recorded to compare
    digests = read_meta(path.parent).get("sha256")
    if not isinstance(digests, dict) or path.name not in digests:
        warnings.warn(f"{str(path)!r} has no recorded checksum (written by an older robopolicy); it cannot be verified.",
                      UserWarning, stacklevel=3)
        return
    if file_sha256(path) != digests[path.name]:
        raise CheckpointError(f"{str(path)!r} does not match the sha256 recorded in its meta.json (truncated or altered); "
                              "load another checkpoint (checkpoint=step_<N>) or copy the run again.")


def check_finite(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """CheckpointError naming the first floating tensor holding NaN or inf."""
    for key, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"Tensor {key!r} in {str(path)!r} holds NaN or inf values; the run diverged before this "
                                  "checkpoint, load an earlier one (checkpoint=step_<N>) or retrain with a lower optim.lr.")


def load_train_state(folder: Path, map_location: str | torch.device = "cpu") -> dict:
    verify_file(Path(folder) / "train_state.pt")
    return torch.load(folder / "train_state.pt", map_location=map_location, weights_only=True)


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A verified (checksum), finite safetensors state dict."""
    verify_file(path)
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated / garbled headers
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({type(e).__name__}); "
                              "load another checkpoint (checkpoint=step_<N>).") from None
    check_finite(state, path)
    return state


def load_weights(model: nn.Module, path: str | os.PathLike, what: str = "model", state: dict | None = None) -> None:
    """Load a safetensors file (or its already-read ``state``) into ``model`` strictly.

    The file is checked first (:func:`read_weights`: checksum, readable, finite). A key or shape
    mismatch -> CheckpointError naming the first differences."""
    state = read_weights(path) if state is None else state
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
