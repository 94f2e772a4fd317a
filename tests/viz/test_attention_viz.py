"""Attention maps drawn over an image (attnreid.viz.attention)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from attnreid.errors import ConfigError
from attnreid.viz import draw_attention
from attnreid.viz.attention import HEADER_PX, upsample_map
from tests.viz.expected import blended_overlay


def _panel(png: np.ndarray, index: int, width: int, scale: int) -> np.ndarray:
    """Panel ``index`` of a drawn figure, without the header band."""
    pw = width * scale
    return png[HEADER_PX:, index * pw : (index + 1) * pw].astype(int)


def test_png_size_and_panels(tmp_path):
    h, w, scale = 48, 24, 3
    image = np.full((h, w, 3), 128, dtype=np.uint8)
    hot = torch.zeros(4, 2)
    hot[0, 0] = 1.0  # attention on the top-left cell only
    rand = torch.rand(6, 3, generator=torch.Generator().manual_seed(0))
    path = draw_attention(image, {"a": hot, "b": rand}, tmp_path / "out.png", scale=scale)
    png = np.asarray(Image.open(path).convert("RGB"))
    assert png.shape == (h * scale + HEADER_PX, 3 * w * scale, 3)
    # the image panel shows the (grey) image, the header holds dark text on white
    first = _panel(png, 0, w, scale)
    assert np.abs(first[5:-5, 5:-5] - 128).max() <= 2
    header = png[:HEADER_PX].astype(int)
    assert header.max() == 255 and header.min() < 128
    # each map panel is the blend of the image and the coloured map, computed by hand
    for index, m in ((1, hot), (2, rand)):
        expected = blended_overlay(np.full((h * scale, w * scale, 3), 128.0), m, scale)
        assert np.abs(_panel(png, index, w, scale) - expected).max() <= 2, index
    # which is the right way up: jet is red where the attention is high (top-left), blue
    # where it is low (bottom-right)
    overlay = _panel(png, 1, w, scale)
    assert overlay[3, 3, 0] > overlay[3, 3, 2] + 40
    assert overlay[-4, -4, 2] > overlay[-4, -4, 0] + 40
    flipped = blended_overlay(np.full((h * scale, w * scale, 3), 128.0), hot.flip(0), scale)
    assert np.abs(overlay - flipped).max() > 100


def test_query_point_is_marked(tmp_path):
    image = np.full((40, 20, 3), 200, dtype=np.uint8)
    maps = {"m": torch.rand(5, 2)}
    plain = draw_attention(image, maps, tmp_path / "plain.png", scale=2)
    marked = draw_attention(image, maps, tmp_path / "marked.png", scale=2, query_point=(0.5, 0.5))
    a = np.asarray(Image.open(plain).convert("RGB")).astype(int)
    b = np.asarray(Image.open(marked).convert("RGB")).astype(int)
    centre = (HEADER_PX + 40, 20)  # the middle of the image panel (height 80, width 40)
    assert np.abs(a[centre] - b[centre]).max() > 50
    far = (HEADER_PX + 5, 5)
    assert np.array_equal(a[far], b[far])


def test_written_atomically_over_an_existing_file(tmp_path):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")
    draw_attention(Image.new("RGB", (16, 32), "white"), {"m": np.ones((2, 1))}, target)
    assert Image.open(target).size == (2 * 16 * 2, 32 * 2 + HEADER_PX)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_upsample_map():
    m = upsample_map(torch.tensor([[0.0, 1.0], [2.0, 3.0]]), 8, 6)
    assert m.shape == (8, 6)
    assert m.min() == pytest.approx(0.0) and m.max() == pytest.approx(1.0)
    assert m[0, 0] < m[0, -1] < m[-1, -1]
    assert not upsample_map(np.full((3, 2), 0.25), 6, 4).any()  # constant -> zeros
    assert upsample_map(torch.rand(1, 3, 2), 6, 4).shape == (6, 4)  # a batch of one


def test_errors(tmp_path):
    image = np.zeros((16, 8, 3), dtype=np.uint8)
    with pytest.raises(ConfigError, match="no attention maps"):
        draw_attention(image, {}, tmp_path / "x.png")
    with pytest.raises(ConfigError, match=r"\(h, w\)"):
        draw_attention(image, {"m": torch.rand(2, 3, 4)}, tmp_path / "x.png")
    with pytest.raises(ConfigError, match="height, width, 3"):
        draw_attention(np.zeros((16, 8)), {"m": torch.rand(2, 2)}, tmp_path / "x.png")
    with pytest.raises(ConfigError, match="scale"):
        draw_attention(image, {"m": torch.rand(2, 2)}, tmp_path / "x.png", scale=0)
    assert not list(tmp_path.iterdir())
