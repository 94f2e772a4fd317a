"""``attnreid viz ranks`` and ``attnreid viz cmc``: from features or checkpoints to PNGs that
show the rankings and curves computed here independently (numpy distances, the reference
re-ranking and the reference metrics)."""

from __future__ import annotations

import numpy as np
import pytest

from attnreid.cli.main import main
from attnreid.evaluation.features import load_features
from attnreid.evaluation.metrics import evaluate_rank
from attnreid.viz.cmc import cmc_figure
from tests.evaluation.reference import reference_market
from tests.evaluation.rerank_reference import re_ranking_reference
from tests.retrieval.helpers import fake_checkpoint
from tests.viz.expected import assert_ranks_picture, cmc_points, curve_points_drawn, line_colours


@pytest.fixture(scope="module")
def setup(tiny_synth, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viz_cli")
    ckpt = fake_checkpoint(tmp / "m.ckpt", tiny_synth)
    assert main(["extract", "--checkpoint", str(ckpt), "-o", str(tmp / "f.npz")]) == 0
    return tmp, ckpt


def _sets(path):
    f = load_features(path)
    return f["query"], f["gallery"]


def _euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a[:, None].astype(np.float64) - b[None]) ** 2).sum(-1))


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return 1 - a.astype(np.float64) @ b.T


def _reranked(q, g) -> np.ndarray:
    qf, gf = q.features.numpy(), g.features.numpy()
    sq = lambda a, b: (_euclidean(a, b) ** 2).astype(np.float32)  # noqa: E731
    return re_ranking_reference(sq(qf, gf), sq(qf, qf), sq(gf, gf))


def _expected_rows(dist, q, g, queries, top):
    """Rows of the ranks picture: each query's ``top`` nearest gallery images (ties by index),
    without the images of its own identity and camera, as ``(path, pid)``."""
    rows = []
    for i in queries:
        order = np.argsort(dist[i], kind="stable")
        junk = (g.pids[order] == q.pids[i]) & (g.camids[order] == q.camids[i])
        kept = order[~junk][:top]
        rows.append(((q.paths[i], int(q.pids[i])), [(g.paths[j], int(g.pids[j])) for j in kept]))
    return rows


def test_viz_ranks(setup, tmp_path, capsys):
    tmp, ckpt = setup
    q, g = _sets(tmp / "f.npz")
    out = tmp_path / "ranks.png"
    argv = ["viz", "ranks", "--features", str(tmp / "f.npz"), "--queries", "0,3,5", "--top", "4"]
    assert main([*argv, "--cell", "64x32", "-o", str(out)]) == 0
    rows = _expected_rows(_euclidean(q.features.numpy(), g.features.numpy()), q, g, [0, 3, 5], 4)
    right = sum(gallery[0][1] == pid for (_, pid), gallery in rows)
    assert f"3 queries x top 4 ({right} with a rank-1 match)" in capsys.readouterr().out
    assert_ranks_picture(out, rows, height=64, width=32, border=4)
    # from the checkpoint, re-ranked, 2 queries evenly spread (0 and 15), top 10, 128x64 cells
    out2 = tmp_path / "ranks_rerank.png"
    assert main(["viz", "ranks", "--checkpoint", str(ckpt), "--rerank", "--num-queries", "2",
                 "-o", str(out2)]) == 0  # fmt: skip
    rows2 = _expected_rows(_reranked(q, g), q, g, [0, len(q) - 1], 10)
    assert_ranks_picture(out2, rows2, height=128, width=64, border=4)
    assert main([*argv[:4], "--queries", "99", "-o", str(out)]) == 2
    assert "--queries: indices must lie in [0, 15]" in capsys.readouterr().err


def _assert_curve_in_png(png, label_to_result, max_rank, top_label, cmc):
    """The figure laid out as the CLI's (same labels and values): the topmost curve's colour
    at every known point of ``cmc`` that is not on the frame or under the legend."""
    fig = cmc_figure(label_to_result, max_rank=max_rank)
    drawn = curve_points_drawn(png, fig, line_colours(fig)[top_label], cmc_points(cmc, max_rank))
    assert len(drawn) >= 5 and all(drawn), drawn


def test_viz_cmc(setup, tmp_path, capsys):
    tmp, ckpt = setup
    q, g = _sets(tmp / "f.npz")
    out = tmp_path / "cmc.png"
    f = str(tmp / "f.npz")
    argv = ["viz", "cmc", "--features", f, "--features", f, "--label", "A", "--label", "B"]
    assert main([*argv, "--metric", "cosine", "-o", str(out)]) == 0
    cos = _cosine(q.features.numpy(), g.features.numpy())
    cmc, m_ap, *_ = reference_market(cos, q.pids, g.pids, q.camids, g.camids, 20)
    printed = capsys.readouterr().out
    assert f"A: R1 {100 * cmc[0]:.1f}, B: R1 {100 * cmc[0]:.1f}" in printed
    # both curves are the same (one file twice): B is drawn over A
    result = evaluate_rank(cos, q.pids, g.pids, q.camids, g.camids, max_rank=20)
    np.testing.assert_allclose(result.cmc, cmc, atol=1e-12)
    assert result.mAP == pytest.approx(m_ap, abs=1e-9)
    _assert_curve_in_png(out, {"A": result, "B": result}, 20, f"B (R1 {100 * cmc[0]:.1f}, "
                         f"mAP {100 * m_ap:.1f})", cmc)  # fmt: skip
    # a file and a checkpoint (the same features), both re-ranked: euclidean, the reference
    out2 = tmp_path / "cmc_ckpt.png"
    argv2 = ["viz", "cmc", "--features", f, "--checkpoint", str(ckpt), "--rerank"]  # a mix
    assert main([*argv2, "-o", str(out2)]) == 0
    rr = _reranked(q, g)
    cmc2, m_ap2, *_ = reference_market(rr, q.pids, g.pids, q.camids, g.camids, 20)
    assert capsys.readouterr().out.count(f"(re-ranked): R1 {100 * cmc2[0]:.1f}") == 2
    result2 = evaluate_rank(rr, q.pids, g.pids, q.camids, g.camids, max_rank=20)
    labels = {f"{f} (re-ranked)": result2, f"{ckpt} (re-ranked)": result2}
    top = f"{ckpt} (re-ranked) (R1 {100 * cmc2[0]:.1f}, mAP {100 * m_ap2:.1f})"
    _assert_curve_in_png(out2, labels, 20, top, cmc2)
    assert main([*argv[:4], "--label", "A", "--label", "B", "-o", str(out)]) == 2
    assert "2 --label for 1 curves" in capsys.readouterr().err
