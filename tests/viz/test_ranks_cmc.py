"""Ranked-results and CMC pictures: the pixels they must show, computed independently."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from attnreid.errors import ConfigError
from attnreid.evaluation.metrics import evaluate_rank
from attnreid.viz.cmc import cmc_figure, draw_cmc
from attnreid.viz.ranks import BLACK, CAPTION_PX, GAP_PX, GREEN, GREY, RED, draw_ranks, ranked_rows
from tests.conftest import write_image
from tests.viz.expected import assert_ranks_picture, cmc_points, curve_points_drawn, line_colours


def test_ranks_figure(tmp_path):
    paths = [str(write_image(tmp_path / f"{i}.jpg", seed=i, size=(20, 40))) for i in range(8)]
    q_pids, q_cams = np.array([1, 2]), np.array([0, 0])
    g_pids, g_cams = np.array([1, 1, 2, 3, 2, -1]), np.array([0, 1, 1, 1, 0, 1])
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]])
    rows = ranked_rows(
        d, paths[:2], q_pids, q_cams, paths[2:], g_pids, g_cams, query_indices=[0, 1], top_k=3
    )
    # query 0 (pid 1, camera 0): gallery 0 is junk (same pid and camera) and skipped
    assert [it.path for it in rows[0][1]] == [paths[3], paths[4], paths[5]]
    # query 1 (pid 2, camera 0): gallery 4 is junk; the unlabelled item comes first
    assert [it.pid for it in rows[1][1]] == [-1, 3, 2] and rows[1][1][0].distance == 0.1
    h, w, b = 64, 32, 3
    out = draw_ranks(rows, tmp_path / "ranks.png", height=h, width=w, border=b)
    cw, ch = w + 2 * b, h + 2 * b
    png = Image.open(out)
    assert png.format == "PNG" and png.size == (cw * 4 + GAP_PX, (ch + CAPTION_PX) * 2)
    # every cell: the image, resized, in the frame of its (hand-derived) match status
    assert_ranks_picture(
        out,
        [
            ((paths[0], 1), [(paths[3], 1), (paths[4], 2), (paths[5], 3)]),
            ((paths[1], 2), [(paths[7], -1), (paths[5], 3), (paths[4], 2)]),
        ],
        height=h,
        width=w,
        border=b,
    )
    arr = np.asarray(png.convert("RGB")).astype(int)
    colour = lambda row, col: tuple(arr[row * (ch + CAPTION_PX) + 1, col])  # noqa: E731
    assert colour(0, 1) == BLACK  # the query's frame
    assert colour(0, cw + GAP_PX + 1) == GREEN  # rank 1 of query 0: pid 1, other camera
    assert colour(0, 2 * cw + GAP_PX + 1) == RED  # rank 2: pid 2
    assert colour(1, cw + GAP_PX + 1) == GREY  # pid unknown
    assert colour(1, 3 * cw + GAP_PX + 1) == GREEN
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".jpg"] == ["ranks.png"]
    with pytest.raises(ConfigError, match="no query"):
        draw_ranks([], tmp_path / "x.png")


def test_cmc_figure(tmp_path):
    rng = np.random.default_rng(0)
    q_pids, g_pids = rng.integers(0, 10, 30), rng.integers(0, 10, 100)
    d = rng.random((30, 100), dtype=np.float32)
    d[q_pids[:, None] == g_pids[None]] *= 0.5
    result = evaluate_rank(d, q_pids, g_pids, np.zeros(30), np.ones(100))
    array = np.linspace(0.2, 1, 30)
    curves = {"model A": result, "array": array}
    out = draw_cmc(curves, tmp_path / "cmc.png")
    assert Image.open(out).format == "PNG" and Image.open(out).size == (640, 480)
    # the plotted lines hold the curves in percent, up to max_rank (50: all of "array")
    fig = cmc_figure(curves)
    a_label = f"model A (R1 {100 * result.cmc[0]:.1f}, mAP {100 * result.mAP:.1f})"
    b_label = "array (R1 20.0)"
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {a_label, b_label}
    np.testing.assert_allclose(lines[a_label].get_ydata(), 100 * result.cmc[:50])
    np.testing.assert_array_equal(lines[a_label].get_xdata(), np.arange(1, 51))
    np.testing.assert_allclose(lines[b_label].get_ydata(), 100 * array)
    # and the PNG has each curve's colour where the axes put its known points
    colours = line_colours(fig)
    for label, cmc in ((a_label, result.cmc), (b_label, array)):
        drawn = curve_points_drawn(out, fig, colours[label], cmc_points(cmc, 50))
        assert len(drawn) >= 10 and all(drawn), (label, drawn)
    # a curve that is not in the picture is not found there
    wrong = curve_points_drawn(out, fig, colours[a_label], cmc_points(1 - array * 0.8, 50))
    assert sum(wrong) < len(wrong) / 2
    with pytest.raises(ConfigError, match="no CMC"):
        draw_cmc({}, tmp_path / "y.png")
