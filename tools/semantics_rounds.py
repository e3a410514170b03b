"""Every finished round of a ``tools/semantics_sweep.py`` run as a markdown table row: success [95 % Wilson],
held-out error and the transfer error per group of the task.

    python tools/semantics_rounds.py runs/semsweep            # every condition / strategy / seed
    python tools/semantics_rounds.py experiments/semproprio

Reads ``<condition>/<strategy>/seed<k>/<strategy>/state.json`` (written after each round, so it also works on a
sweep still running). Errors in cm; a group read from the robot (``semantics.proprio_semantics``) shows 0.00.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _groups(r: dict, prefix: str) -> str:
    """'pusher 1.20, puck 0.80' from a round's <prefix><group>_error_m entries (cm), in the order recorded."""
    skip = ("offline", "semantics", "label") if not prefix else ()
    return ", ".join(f"{k[len(prefix):].removesuffix('_error_m')} {100 * v:.2f}" for k, v in r.items()
                     if k.startswith(prefix) and k.endswith("_error_m") and k != f"{prefix}error_m" and not (skip and k.startswith(skip)))


def rows(sweep: Path) -> list[str]:
    out = ["| condition | strategy | seed | annotations (labelled frames) | success [95 %] | held-out error per group (cm) | transfer error per group (cm) |",
           "|---|---|---:|---|---|---|---|"]
    for st in sorted(sweep.glob("*/*/seed*/*/state.json")):
        seed_dir = st.parent.parent
        cond, strategy, seed = seed_dir.parent.parent.name, seed_dir.parent.name, seed_dir.name.removeprefix("seed")
        for r in json.loads(st.read_text())["records"]:
            transfer = _groups(r, "")
            held_out = _groups(r, "offline_") or f"{100 * r['offline_error_m']:.2f} (mean)"
            ok = f"{r['success_rate']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]" if "success_rate" in r else "-"
            out.append(f"| {cond} | {strategy} | {seed} | {r['annotations']} ({r['labeled_frames']}) | {ok} | {held_out} | {transfer} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", help="the --out folder of tools/semantics_sweep.py")
    print("\n".join(rows(Path(ap.parse_args().sweep))))


if __name__ == "__main__":
    main()
