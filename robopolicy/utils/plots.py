"""Figure output shared by every plot the package writes (reports, timing, training curves)."""

from __future__ import annotations

import os
from pathlib import Path


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Lay out ``fig``, write it to ``path`` (folders made as needed) and close it; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def reference_lines(ax, success_rate: float, share: float = 0.9) -> None:
    """The true-semantics success and ``share`` of it as horizontal lines (the semantics curves' targets)."""
    ax.axhline(success_rate, color="k", ls="--", lw=1, label="true semantics")
    ax.axhline(share * success_rate, color="k", ls=":", lw=1, label=f"{share:.0%} of it")


def save_figure_with_summary(fig, path: str | os.PathLike, summary: dict) -> None:
    """``save_figure`` plus the plotted numbers as JSON beside it (same name, ``.json``)."""
    import json

    save_figure(fig, path)
    Path(path).with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {path} and {Path(path).with_suffix('.json')}")
