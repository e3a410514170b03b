"""Compare two run folders made by the same command (e.g. before and after a refactor).

Prints whether each checkpoint's ``model.safetensors`` is byte-identical in both runs and which
keys of ``summary.json`` (and of any ``eval*.json`` at the run root) differ, ignoring timing keys
(``*time*``, ``latency_ms``, ``*per_s``, ``*_s``) that no two runs share.

    python tools/compare_runs.py runs/before runs/after
"""

from __future__ import annotations

import argparse
import filecmp
import json
from pathlib import Path

TIMING = ("time", "latency_ms", "per_s")


def is_timing(key: str) -> bool:
    return any(t in key for t in TIMING) or key.endswith("_s")


def strip_timing(d):
    if isinstance(d, dict):
        return {k: strip_timing(v) for k, v in d.items() if not is_timing(k)}
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    args = ap.parse_args()
    for wa in sorted(args.a.glob("checkpoints/*/model.safetensors")):
        wb = args.b / wa.relative_to(args.a)
        same = wb.exists() and filecmp.cmp(wa, wb, shallow=False)
        print(f"{wa.relative_to(args.a)}: {'identical' if same else 'DIFFERENT'}")
    for ja in sorted([*args.a.glob("summary.json"), *args.a.glob("eval*.json")]):
        jb = args.b / ja.name
        x, y = strip_timing(json.loads(ja.read_text())), strip_timing(json.loads(jb.read_text())) if jb.exists() else {}
        diff = {k: (x.get(k), y.get(k)) for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)}
        print(f"{ja.name}: {'same (timing keys ignored)' if not diff else diff}")


if __name__ == "__main__":
    main()
