"""Ranked-results and CMC pictures: PNGs of the right size with real content."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from attnreid.errors import ConfigError
from attnreid.evaluation.metrics import evaluate_rank
from attnreid.viz.cmc import draw_cmc
from attnreid.viz.ranks import BLACK, CAPTION_PX, GAP_PX, GREEN, GREY, RED, draw_ranks, ranked_rows
from tests.conftest import write_image


def check_png(path, size=None):
    img = Image.open(path)
    assert img.format == "PNG"
    if size is not None:
        assert img.size == size
    arr = np.asarray(img.convert("RGB")).astype(int)
    assert arr.std() > 10 and len(np.unique(arr.reshape(-1, 3), axis=0)) > 50  # not blank
    return arr


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
    arr = check_png(out, (cw * 4 + GAP_PX, (ch + CAPTION_PX) * 2))
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
    out = draw_cmc({"model A": result, "array": np.linspace(0.2, 1, 30)}, tmp_path / "cmc.png")
    check_png(out, (640, 480))
    with pytest.raises(ConfigError, match="no CMC"):
        draw_cmc({}, tmp_path / "y.png")
