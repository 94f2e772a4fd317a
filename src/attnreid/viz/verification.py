"""The verification picture: genuine and impostor distance histograms with the thresholds.

Two densities over the same bins — the distances of genuine pairs (same identity, other
camera) and of impostor pairs (different identities) — and a vertical line at the threshold of
each false match rate, labelled with the true match rate there. Where the two humps overlap, no
threshold separates the same person from another. Drawn with matplotlib's Agg canvas; the PNG
is written atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from attnreid.evaluation.verification import VerificationResult
from attnreid.utils.io import atomic_write

__all__ = ["draw_verification", "verification_figure"]


def verification_figure(result: VerificationResult, title: str | None = None) -> Figure:
    """The figure described in the module docstring."""
    counts, edges = result.impostor_hist
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    widths = np.diff(edges)
    impostor = counts / max(counts.sum(), 1) / np.where(widths > 0, widths, 1)
    genuine = np.histogram(result.genuine, edges, density=True)[0] if result.genuine.size else 0
    for density, colour, label in (
        (impostor, "tab:red", f"impostor pairs ({result.num_impostor:,})"),
        (genuine, "tab:green", f"genuine pairs ({result.num_genuine:,})"),
    ):
        ax.stairs(density, edges, fill=True, alpha=0.45, color=colour, label=label)
    for f, t, tmr in zip(result.fmrs, result.thresholds, result.tmrs):
        if math.isfinite(t):
            ax.axvline(t, color="black", lw=1, ls="--")
            ax.text(
                t,
                ax.get_ylim()[1] * 0.95,
                f" FPR {f:g}\n TPR {100 * tmr:.1f}%",
                fontsize=7,
                va="top",
            )
    ax.set_xlabel("distance")
    ax.set_ylabel("density")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def draw_verification(
    result: VerificationResult, path: str | os.PathLike[str], title: str | None = None
) -> Path:
    """Draw :func:`verification_figure` and write it to ``path`` as a PNG, atomically."""
    fig = verification_figure(result, title)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
