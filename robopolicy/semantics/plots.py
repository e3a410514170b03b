"""One figure: transferred success and semantics error against the number of annotations, per strategy."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from robopolicy.utils.plots import save_figure  # noqa: E402


def plot_curves(curves: Mapping[str, Sequence[dict]], out_path: str | Path, reference: dict | None = None,
                title: str = "") -> Path:
    """curves: strategy -> rounds with annotations, success_rate, ci95, offline_error_m, offline_error_se_m.

    Left: success with 95% Wilson intervals (and the controller on true semantics as a band).
    Right: offline semantics error (cm) with ±1.96 standard errors.
    """
    fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, rounds in curves.items():
        x = [r["annotations"] for r in rounds]
        line = ax_s.plot(x, [r["success_rate"] for r in rounds], marker="o", label=name)[0]
        ax_s.fill_between(x, [r["ci95"][0] for r in rounds], [r["ci95"][1] for r in rounds], color=line.get_color(), alpha=0.15)
        err = [100 * r["offline_error_m"] for r in rounds]
        se = [100 * 1.96 * r.get("offline_error_se_m", 0.0) for r in rounds]
        ax_e.errorbar(x, err, yerr=se, marker="o", capsize=3, color=line.get_color(), label=name)
    if reference is not None:
        ax_s.axhline(reference["success_rate"], color="k", ls="--", lw=1, label="true semantics")
        ax_s.axhspan(*reference["ci95"], color="k", alpha=0.07)
    ax_s.set(xlabel="annotations", ylabel="transferred success rate", ylim=(-0.02, 1.02))
    ax_e.set(xlabel="annotations", ylabel="semantics error on held-out real frames (cm)")
    ax_e.set_yscale("log")
    ax_s.legend(fontsize=8)
    ax_s.grid(alpha=0.3)
    ax_e.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out_path)
