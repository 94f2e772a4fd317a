"""Ranked retrieval results: a query and its top-k gallery images, like torchreid's figures.

One row per query: the query image, a gap, then its ``k`` nearest gallery images in rank
order. Each image is resized to one cell size and framed: **green** when the gallery image
shows the query's identity, **red** when it shows another one, **grey** when either identity
is unknown (``pid < 0``; e.g. a search in an unlabelled gallery); the query's frame is black.
Under every image a caption gives its rank and distance, identity and camera. As in torchreid's
``visualize_ranked_results``, :func:`ranked_rows` skips the gallery images that evaluation
ignores (same identity *and* camera as the query) unless ``skip_junk=False``.

The images are composed as pixels (exact cell sizes), the captions are drawn by matplotlib's
Agg canvas (no display needed), and the PNG is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from attnreid.data.images import read_image
from attnreid.errors import ConfigError
from attnreid.utils.io import atomic_write

__all__ = ["RankedItem", "draw_ranks", "ranked_rows", "ranks_figure"]

GREEN, RED, GREY, BLACK = (0, 190, 0), (220, 0, 0), (150, 150, 150), (0, 0, 0)
CAPTION_PX = 26  # band under each row of images holding the captions
GAP_PX = 16  # between the query and its gallery images
_DPI = 100


@dataclass
class RankedItem:
    """An image in the figure (``distance`` is None for the query)."""

    path: str
    pid: int = -1
    camid: int = -1
    distance: float | None = None


def _colour(query: RankedItem, item: RankedItem) -> tuple[int, int, int]:
    if query.pid < 0 or item.pid < 0:
        return GREY
    return GREEN if item.pid == query.pid else RED


def _cell(
    path: str, height: int, width: int, border: int, colour: tuple[int, int, int]
) -> np.ndarray:
    img = read_image(path).resize((width, height), Image.Resampling.BILINEAR)
    out = np.empty((height + 2 * border, width + 2 * border, 3), dtype=np.uint8)
    out[:] = colour
    out[border : border + height, border : border + width] = np.asarray(img)
    return out


def _caption(item: RankedItem, rank: int | None) -> str:
    ident = "pid ?" if item.pid < 0 else f"pid {item.pid}"
    cam = "" if item.camid < 0 else f" c{item.camid + 1}"
    if rank is None:
        return f"query\n{ident}{cam}"
    d = item.distance if item.distance is not None and abs(item.distance) >= 1e-4 else 0.0
    return f"#{rank} {d:.3g}\n{ident}{cam}"


def ranks_figure(
    rows: Sequence[tuple[RankedItem, Sequence[RankedItem]]],
    *,
    height: int = 128,
    width: int = 64,
    border: int = 4,
) -> Figure:
    """The figure of the module docs: ``rows`` is ``[(query, [gallery items in rank order])]``."""
    if not rows:
        raise ConfigError("no query to draw")
    if min(height, width) < 8 or border < 0:
        raise ConfigError(f"cell size {height}x{width} (border {border}) is too small")
    k = max(len(g) for _, g in rows)
    cw, ch = width + 2 * border, height + 2 * border
    total_w = cw * (k + 1) + GAP_PX
    row_h = ch + CAPTION_PX
    total_h = row_h * len(rows)
    canvas = np.full((total_h, total_w, 3), 255, dtype=np.uint8)
    captions = []
    for r, (query, gallery) in enumerate(rows):
        y = r * row_h
        canvas[y : y + ch, 0:cw] = _cell(query.path, height, width, border, BLACK)
        captions.append((cw / 2, y + ch, _caption(query, None)))
        for j, item in enumerate(gallery):
            x = cw * (j + 1) + GAP_PX
            canvas[y : y + ch, x : x + cw] = _cell(
                item.path, height, width, border, _colour(query, item)
            )
            captions.append((x + cw / 2, y + ch, _caption(item, j + 1)))
    fig = Figure(figsize=(total_w / _DPI, total_h / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.imshow(canvas, extent=(0, total_w, total_h, 0), interpolation="nearest")
    ax.set_xlim(0, total_w)
    ax.set_ylim(total_h, 0)
    for x, y, text in captions:
        ax.text(x, y + 2, text, ha="center", va="top", fontsize=6, linespacing=1.1)
    return fig


def draw_ranks(
    rows: Sequence[tuple[RankedItem, Sequence[RankedItem]]],
    path: str | os.PathLike[str],
    *,
    height: int = 128,
    width: int = 64,
    border: int = 4,
) -> Path:
    """Draw :func:`ranks_figure` and write it to ``path`` as a PNG, atomically."""
    fig = ranks_figure(rows, height=height, width=width, border=border)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI))


def ranked_rows(
    distmat: np.ndarray,
    query_paths: Sequence[str],
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    gallery_paths: Sequence[str],
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    *,
    query_indices: Sequence[int],
    top_k: int = 10,
    skip_junk: bool = True,
) -> list[tuple[RankedItem, list[RankedItem]]]:
    """Rows for :func:`ranks_figure` from a ``(len(query_indices), G)`` distance matrix (row
    ``i`` belongs to query ``query_indices[i]``); ties are ranked by gallery index."""
    d = np.asarray(distmat)
    if d.shape != (len(query_indices), len(gallery_paths)):
        raise ConfigError(
            f"distance matrix of shape {d.shape} for {len(query_indices)} queries and "
            f"{len(gallery_paths)} gallery images"
        )
    rows = []
    for row, qi in zip(d, query_indices):
        q = RankedItem(query_paths[qi], int(q_pids[qi]), int(q_camids[qi]))
        items = []
        for g in np.argsort(row, kind="stable"):
            junk = q.pid >= 0 and g_pids[g] == q.pid and q.camid >= 0 and g_camids[g] == q.camid
            if skip_junk and junk:
                continue
            items.append(
                RankedItem(gallery_paths[g], int(g_pids[g]), int(g_camids[g]), float(row[g]))
            )
            if len(items) == top_k:
                break
        rows.append((q, items))
    return rows
