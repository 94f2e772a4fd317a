"""What the pictures must show, computed independently of attnreid.viz: framed image cells of
the ranks figure, the blended attention overlay, and the pixels of CMC curve points."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from PIL import Image

from attnreid.viz.ranks import BLACK, CAPTION_PX, GAP_PX, GREEN, GREY, RED


# ------------------------------------------------------------------------------ ranks figure
def frame_colour(query_pid: int, pid: int) -> tuple[int, int, int]:
    """Green for a true match, red for a false one, grey when an identity is unknown."""
    if query_pid < 0 or pid < 0:
        return GREY
    return GREEN if pid == query_pid else RED


def framed(path: str | Path, height: int, width: int, border: int, colour) -> np.ndarray:
    """The image at ``path`` resized (bilinear) to ``height x width`` in a ``colour`` frame."""
    img = Image.open(path).convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    out = np.empty((height + 2 * border, width + 2 * border, 3), dtype=np.int64)
    out[:] = colour
    out[border : border + height, border : border + width] = np.asarray(img)
    return out


def assert_ranks_picture(
    png: str | Path,
    rows: Sequence[tuple[tuple[str, int], Sequence[tuple[str, int]]]],
    *,
    height: int,
    width: int,
    border: int,
) -> None:
    """``png`` shows, row by row, each query ``(path, pid)`` in a black frame, then its
    gallery images ``(path, pid)`` in rank order framed by :func:`frame_colour`, pixel for
    pixel, at the documented cell positions (captions under each row of cells)."""
    arr = np.asarray(Image.open(png).convert("RGB")).astype(np.int64)
    cw, ch = width + 2 * border, height + 2 * border
    k = max(len(g) for _, g in rows)
    assert arr.shape == ((ch + CAPTION_PX) * len(rows), cw * (k + 1) + GAP_PX, 3)
    for r, ((q_path, q_pid), gallery) in enumerate(rows):
        y = r * (ch + CAPTION_PX)
        cells = [(0, framed(q_path, height, width, border, BLACK))]
        cells += [
            (cw * (j + 1) + GAP_PX, framed(path, height, width, border, frame_colour(q_pid, pid)))
            for j, (path, pid) in enumerate(gallery)
        ]
        for x, expected in cells:
            np.testing.assert_array_equal(arr[y : y + ch, x : x + cw], expected)


# ------------------------------------------------------------------------- attention overlay
def blended_overlay(
    base: np.ndarray, attention, scale: int, alpha: float = 0.5, cmap: str = "jet"
) -> np.ndarray:
    """The overlay panel by hand: ``(1 - alpha) * base + alpha * colour(map)``, where the map
    is upsampled bilinearly to the image size, min-max scaled to [0, 1], coloured with
    ``cmap`` and magnified ``scale`` times (nearest); ``base`` is the image panel as drawn."""
    height, width = base.shape[0] // scale, base.shape[1] // scale
    m = torch.as_tensor(np.asarray(attention, dtype=np.float32))
    up = F.interpolate(m[None, None], size=(height, width), mode="bilinear", align_corners=False)
    up = up[0, 0].numpy().astype(np.float64)
    span = up.max() - up.min()
    up = (up - up.min()) / span if span > 1e-12 else np.zeros_like(up)
    colour = colormaps[cmap](up)[..., :3] * 255
    colour = np.repeat(np.repeat(colour, scale, axis=0), scale, axis=1)
    return (1 - alpha) * base.astype(np.float64) + alpha * colour


# ------------------------------------------------------------------------------- CMC figure
def curve_points_drawn(
    png: str | Path, figure, colour, points: Sequence[tuple[float, float]]
) -> list[bool]:
    """For each data point ``(rank, accuracy in %)`` of a curve: whether a pixel of ``colour``
    lies within one pixel of where the axes of ``figure`` (a figure laid out like the PNG's)
    put it. Points on the axes' frame or under the legend are left out (not returned)."""
    arr = np.asarray(Image.open(png).convert("RGB")).astype(np.int64)
    figure.canvas.draw()
    assert arr.shape[:2] == figure.canvas.get_width_height()[::-1]
    ax = figure.axes[0]
    legend = ax.get_legend().get_window_extent().padded(4)
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    rgb = np.round(np.array(to_rgb(colour)) * 255).astype(np.int64)
    found = []
    for k, acc in points:
        if not (x0 < k < x1 and y0 < acc < y1):
            continue
        px, py = ax.transData.transform((k, acc))
        if legend.contains(px, py):
            continue
        row, col = int(arr.shape[0] - py), int(px)
        patch = arr[row - 1 : row + 2, col - 1 : col + 2].reshape(-1, 3)
        found.append(bool((np.abs(patch - rgb).sum(1) <= 3).any()))
    return found


def cmc_points(cmc: np.ndarray, max_rank: int) -> list[tuple[float, float]]:
    """``(k, 100 * cmc[k - 1])`` for k up to ``max_rank``."""
    cmc = np.asarray(cmc, dtype=np.float64)[:max_rank]
    return [(k + 1.0, 100.0 * float(v)) for k, v in enumerate(cmc)]


def line_colours(figure) -> Mapping[str, str]:
    """Legend label -> colour of each plotted curve of ``figure``."""
    return {line.get_label(): line.get_color() for line in figure.axes[0].get_lines()}
