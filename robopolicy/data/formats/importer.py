"""Detect a dataset's format, import it into an episode store, export a store; summaries.

The import is crash-safe: the store is built at ``.<name>.importing`` next to ``out`` and renamed
to ``out`` only after the last episode is committed (robomimic's importer does the same itself).
Without fsync per file: the rename is the one commit point, so a killed import leaves only the
temporary folder, which the next import of the same ``out`` removes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from robopolicy.data.formats.common import Source
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError

FORMATS = ("lerobot", "dp_zarr", "robomimic")


def detect_format(src: Path) -> str:
    """``lerobot`` | ``dp_zarr`` | ``robomimic`` for the dataset at ``src``; DataError if none fits."""
    from robopolicy.data.formats.dp_zarr import is_dp_zarr
    from robopolicy.data.formats.lerobot_read import is_lerobot

    if not src.exists():
        raise DataError(f"No dataset at {src}; check the path.")
    if src.is_file():
        if src.suffix.lower() in (".hdf5", ".h5"):
            return "robomimic"
        if src.suffix.lower() == ".zip" and is_dp_zarr(src):
            return "dp_zarr"
        raise DataError(f"{src} is a file but neither a robomimic .hdf5 nor a zipped Diffusion Policy buffer; point to a LeRobot folder, "
                        "a Diffusion Policy .zarr folder or .zarr.zip, or a robomimic .hdf5 file.")
    if is_lerobot(src):
        return "lerobot"
    if is_dp_zarr(src):
        return "dp_zarr"
    if (src / "zarr.json").is_file() and (src / "meta").is_dir():
        raise DataError(f"{src} is already a robopolicy episode store; train on it directly with dataset={src}.")
    raise DataError(f"{src} is no known dataset format (no meta/info.json of a LeRobot dataset, no data/ + meta/episode_ends of a "
                    "Diffusion Policy zarr buffer); point to one of those or a robomimic .hdf5 file, or pass format=.")


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; choose another out= or pass overwrite=true.")


def open_source(src: Path, fmt: str, cfg: Mapping[str, Any]) -> Source:
    """The reader for ``fmt`` with the mapping options of ``cfg`` (conf/import.yaml)."""
    rename, drop, rule = dict(cfg.get("rename") or {}), list(cfg.get("drop") or []), str(cfg["derive_success"])
    if fmt == "lerobot":
        from robopolicy.data.formats.lerobot_read import read_lerobot

        return read_lerobot(src, state_key=str(cfg["state_key"]), rename=rename, drop=drop, success_rule=rule)
    if fmt == "dp_zarr":
        from robopolicy.data.formats.dp_zarr import read_dp_zarr

        return read_dp_zarr(src, fps=float(cfg.get("fps") or cfg["default_fps"]), rename=rename, drop=drop,
                            extra_keys=list(cfg.get("extra_keys") or []), success_rule=rule)
    raise DataError(f"Unknown format {fmt!r}; use format=auto or one of {', '.join(FORMATS)}.")


def import_dataset(src, out, fmt: str = "auto", cfg: Mapping[str, Any] | None = None, overwrite: bool = False,
                   progress: bool = True) -> dict:
    """Import ``src`` into a new store at ``out``; returns the summary dict (see :func:`summary`)."""
    from tqdm import tqdm

    cfg = dict(cfg or {})
    src, out = Path(src), Path(out)
    fmt = detect_format(src) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise DataError(f"Unknown format {fmt!r}; use format=auto or one of {', '.join(FORMATS)}.")
    _check_out(out, overwrite)
    if fmt == "robomimic":
        from robopolicy.data.robomimic_io import import_robomimic

        store = import_robomimic(src, out, obs_keys=cfg.get("obs_keys"), image_keys=cfg.get("image_keys"), overwrite=overwrite)
        return summary(store, "robomimic", ["robomimic has no success flag: success = reward > 0"])
    source = open_source(src, fmt, cfg)
    tmp = out.with_name(f".{out.name}.importing")
    shutil.rmtree(tmp, ignore_errors=True)
    prov = {**source.provenance, "format": fmt, "task": "dataset"}
    try:
        store = EpisodeStore.create(tmp, source.spec, attrs=prov, fsync=False)
        bar = tqdm(total=source.n_steps, unit="frame", desc=f"import {src.name}", disable=not progress, leave=False)
        for ep in source.episodes():
            store.append_episode(ep)
            bar.update(len(ep["action"]))
        bar.close()
        store.update_attrs({"notes": sorted(source.notes)})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return summary(EpisodeStore.open(out), fmt, sorted(source.notes))


def summary(store: EpisodeStore, fmt: str, notes: Sequence[str]) -> dict:
    spec = store.spec
    keys = {k: {"shape": list(v.shape), "dtype": v.dtype, "kind": v.kind} for k, v in spec.obs.items()}
    return {"path": str(store.path), "format": fmt, "episodes": store.n_episodes, "steps": store.n_steps, "fps": spec.control_hz,
            "obs": keys, "action_dim": spec.action_dim, "keys": store.keys, "notes": list(notes)}


def format_summary(s: Mapping[str, Any], verb: str = "imported") -> str:
    obs = ", ".join(f"{k} {v['dtype']}{tuple(v['shape'])}" for k, v in s["obs"].items())
    lines = [f"{verb} {s['format']} -> {s['path']}: {s['episodes']} episodes, {s['steps']} steps at {s['fps']:g} fps",
             f"  observations: {obs}", f"  action: float32({s['action_dim']},); stored keys: {', '.join(s['keys'])}"]
    lines += [f"  note: {n}" for n in s.get("notes", [])]
    return "\n".join(lines)


def export_dataset(store_path, out, fmt: str = "lerobot", cfg: Mapping[str, Any] | None = None, overwrite: bool = False,
                   progress: bool = True) -> dict:
    """Write the store at ``store_path`` to ``out`` as ``lerobot`` (v3.0 folder) or ``robomimic`` (HDF5)."""
    cfg = dict(cfg or {})
    out = Path(out)
    store = EpisodeStore.open(store_path)
    _check_out(out, overwrite)
    if fmt == "robomimic":
        from robopolicy.data.robomimic_io import export_robomimic

        export_robomimic(store, out, overwrite=overwrite)
    elif fmt == "lerobot":
        from robopolicy.data.formats.lerobot_write import write_lerobot

        tmp = out.with_name(f".{out.name}.exporting")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            write_lerobot(store, tmp, codec=str(cfg["codec"]), crf=int(cfg["crf"]), preset=cfg.get("preset"),
                          state_key=cfg.get("state_key"), data_file_mb=float(cfg["data_file_mb"]),
                          video_file_mb=float(cfg["video_file_mb"]), progress=progress)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    else:
        raise DataError(f"Unknown export format {fmt!r}; use format=lerobot or format=robomimic.")
    return {"path": str(out), "format": fmt, "episodes": store.n_episodes, "steps": store.n_steps}
