"""Attention maps drawn over the image they were computed on, like Fig. 11 of SA-ResNet.

The figure is a row of panels of the same size: the (resized) input image, then one panel
per attention map with the map, bilinearly upsampled to the image size and min-max scaled
to ``[0, 1]``, overlaid in a colour map (bright = more attention). A header above each panel
names the map and gives its largest value (the colours are relative: a uniform softmax over
``L`` positions has every value ``1 / L``). With a query point, a cross marks it on every
panel. Drawing uses matplotlib's Agg canvas directly (no pyplot, no display needed) and the
PNG is written atomically.

The PNG is exactly ``panels * width * scale`` pixels wide and ``height * scale + HEADER_PX``
pixels high, for an image of ``height x width`` pixels.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from attnreid.errors import ConfigError, ModelError
from attnreid.utils.checks import positive_int
from attnreid.utils.io import atomic_write

HEADER_PX = 30  # the band above the panels holding their titles
_DPI = 100


def _as_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ConfigError(f"image must be (height, width, 3), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
    return arr


def upsample_map(attention: Tensor | np.ndarray, height: int, width: int) -> np.ndarray:
    """An ``(h, w)`` map -> ``(height, width)`` float array in ``[0, 1]`` (bilinear, min-max).

    A constant map becomes zeros.
    """
    t = torch.as_tensor(np.asarray(attention, dtype=np.float32))
    if t.dim() == 3 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 2:
        raise ConfigError(f"an attention map must be (h, w), got shape {tuple(t.shape)}")
    up = F.interpolate(t[None, None], size=(height, width), mode="bilinear", align_corners=False)
    up = up[0, 0]
    lo, hi = float(up.min()), float(up.max())
    if hi - lo <= 1e-12:
        return np.zeros((height, width), dtype=np.float32)
    return ((up - lo) / (hi - lo)).numpy()


def attention_figure(
    image: Image.Image | np.ndarray,
    maps: Mapping[str, Tensor | np.ndarray],
    *,
    query_point: tuple[float, float] | None = None,
    scale: int = 2,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> Figure:
    """The figure described in the module docstring (one panel per map, after the image).

    Args:
        image: the image the maps were computed on, ``(H, W, 3)`` (uint8, or float in [0, 1])
            or a PIL image; drawn as is.
        maps: name -> ``(h, w)`` attention map (one image's, not a batch).
        query_point: ``(y, x)`` in ``[0, 1]`` image coordinates, marked on every panel.
        scale: integer magnification of the panels (re-ID crops are small).
        alpha: opacity of the overlaid maps.
        cmap: a matplotlib colour map name.
    """
    rgb = _as_rgb(image)
    if not maps:
        raise ConfigError("no attention maps to draw")
    positive_int(scale, "scale")
    height, width = rgb.shape[:2]
    panels = [("image", None, None)] + [
        (name, upsample_map(m, height, width), float(np.asarray(m, dtype=np.float64).max()))
        for name, m in maps.items()
    ]
    pw, ph = width * scale, height * scale
    total_w, total_h = pw * len(panels), ph + HEADER_PX
    fig = Figure(figsize=(total_w / _DPI, total_h / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    for i, (name, overlay, peak) in enumerate(panels):
        ax = fig.add_axes((i * pw / total_w, 0.0, pw / total_w, ph / total_h))
        ax.set_axis_off()
        extent = (0.0, float(width), float(height), 0.0)
        ax.imshow(rgb, extent=extent, interpolation="bilinear")
        if overlay is not None:
            ax.imshow(
                overlay,
                cmap=cmap,
                alpha=alpha,
                vmin=0.0,
                vmax=1.0,
                extent=extent,
                interpolation="nearest",
            )
        if query_point is not None:
            y, x = query_point
            ax.plot([x * width], [y * height], marker="+", color="white", markersize=10, mew=2)
            ax.plot([x * width], [y * height], marker="+", color="black", markersize=6, mew=1)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        title = name if peak is None else f"{name}\nmax {peak:.3g}"
        fig.text(
            (i + 0.5) * pw / total_w,
            1.0 - HEADER_PX / 2 / total_h,
            title,
            ha="center",
            va="center",
            fontsize=7,
            linespacing=1.1,
        )
    return fig


def attention_png(
    image: Image.Image | np.ndarray, maps: Mapping[str, Tensor | np.ndarray], **options: Any
) -> bytes:
    """:func:`attention_figure` (``options``: query_point, scale, alpha, cmap) as PNG bytes."""
    buf = io.BytesIO()
    attention_figure(image, maps, **options).savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def draw_attention(
    image: Image.Image | np.ndarray,
    maps: Mapping[str, Tensor | np.ndarray],
    path: str | os.PathLike[str],
    **options: Any,
) -> Path:
    """Write :func:`attention_png` to ``path``, atomically."""
    data = attention_png(image, maps, **options)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def model_attention(
    extractor: Any, image: Image.Image, point: tuple[float, float] | None = None
) -> tuple[Image.Image, dict[str, Tensor]]:
    """The attention maps of a model (a :class:`~attnreid.evaluation.extractor.FeatureExtractor`
    whose model has ``attention_maps``) for one image, through its test preprocessing, and the
    image as the model sees it (resized to its input size): what ``attnreid viz attention``
    and the search page draw. ``point``: ``(y, x)`` in ``[0, 1]``, the query position."""
    name = extractor.model_name
    if not callable(getattr(extractor.model, "attention_maps", None)):
        raise ModelError(f"model {name!r} has no attention maps to draw (no attention module)")
    x = extractor.preprocess([image]).to(extractor.device)
    with torch.no_grad():
        maps = extractor.model.attention_maps(x, point)  # {name: (1, h, w)}
    if not maps:
        raise ModelError(f"model {name!r} returned no attention maps")
    height, width = extractor.size
    shown = image.resize((width, height), Image.Resampling.BILINEAR)
    return shown, {k: v[0].float().cpu() for k, v in maps.items()}
