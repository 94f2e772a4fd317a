"""CMC curves: rank-k accuracy against k, one curve per model or setting.

Each curve is labelled with its rank-1 accuracy and, when given a
:class:`~attnreid.evaluation.metrics.RankResult`, its mAP. Drawn with matplotlib's Agg canvas
(no display needed); the PNG is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from attnreid.errors import ConfigError
from attnreid.evaluation.metrics import RankResult
from attnreid.utils.io import atomic_write

__all__ = ["cmc_figure", "draw_cmc"]

_DPI = 100


def cmc_figure(
    curves: Mapping[str, RankResult | np.ndarray],
    *,
    max_rank: int = 50,
    title: str | None = None,
    size: tuple[float, float] = (6.4, 4.8),
) -> Figure:
    """A figure with one CMC curve (in percent) per entry of ``curves`` (label -> result or
    CMC array, ``cmc[k-1]`` = rank-k accuracy in ``[0, 1]``), up to rank ``max_rank``."""
    if not curves:
        raise ConfigError("no CMC curve to draw")
    if max_rank < 1:
        raise ConfigError(f"max_rank must be positive, got {max_rank}")
    fig = Figure(figsize=size, dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    top = 1
    for label, value in curves.items():
        cmc = np.asarray(value.cmc if isinstance(value, RankResult) else value, dtype=np.float64)
        if cmc.ndim != 1 or cmc.size == 0:
            raise ConfigError(f"CMC of {label!r} must be a non-empty 1-D array")
        cmc = cmc[:max_rank]
        top = max(top, cmc.size)
        text = f"{label} (R1 {100 * cmc[0]:.1f}"
        text += f", mAP {100 * value.mAP:.1f})" if isinstance(value, RankResult) else ")"
        ranks = np.arange(1, cmc.size + 1)
        ax.plot(ranks, 100 * cmc, marker="o" if cmc.size <= 20 else None, markersize=3, label=text)
    ax.set_xlim(1, top)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, 100)
    ax.set_xlabel("rank k")
    ax.set_ylabel("rank-k accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def draw_cmc(
    curves: Mapping[str, RankResult | np.ndarray],
    path: str | os.PathLike[str],
    *,
    max_rank: int = 50,
    title: str | None = None,
) -> Path:
    """Draw :func:`cmc_figure` and write it to ``path`` as a PNG, atomically."""
    fig = cmc_figure(curves, max_rank=max_rank, title=title)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI))
