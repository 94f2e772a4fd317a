"""k-reciprocal re-ranking: the fast version against the literal oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnreid.errors import ConfigError
from attnreid.evaluation import rerank as rr
from attnreid.evaluation.metrics import evaluate_rank
from attnreid.evaluation.scoring import rerank_features
from attnreid.utils.distance import compute_distance
from tests.evaluation.rerank_reference import re_ranking_reference


def clustered(seed: int, num_q: int, num_g: int, dim: int = 16, ids: int = 10, dup: int = 0):
    """Symmetric float32 euclidean distances of clustered random features (+ ids, cameras).

    ``dup`` gallery items are exact copies of others, which creates ties in distance."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((ids, dim))
    pids = rng.integers(0, ids, num_q + num_g)
    feats = centers[pids] + 0.8 * rng.standard_normal((num_q + num_g, dim))
    for k in range(dup):
        feats[num_q + num_g - 1 - k] = feats[num_q + k]
        pids[num_q + num_g - 1 - k] = pids[num_q + k]
    d = np.sqrt(((feats[:, None] - feats[None]) ** 2).sum(-1)).astype(np.float32)
    np.fill_diagonal(d, 0)
    q = num_q
    cams = rng.integers(0, 3, num_q + num_g)
    return (d[:q, q:], d[:q, :q], d[q:, q:]), (pids[:q], pids[q:], cams[:q], cams[q:]), feats


PARAMS = [
    (20, 6, 0.3, True),
    (5, 3, 0.5, True),
    (7, 1, 0.1, True),
    (3, 10, 0.0, True),
    (4, 2, 1.0, False),
    (11, 6, 0.3, False),
]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("k1", "k2", "lam", "square"), PARAMS)
def test_fast_equals_oracle(seed, k1, k2, lam, square):
    rng = np.random.default_rng(seed + 100)
    num_q, num_g = int(rng.integers(3, 30)), int(rng.integers(10, 90))
    mats, ids, _ = clustered(seed, num_q, num_g, dup=seed % 3)
    ref = re_ranking_reference(*mats, k1=k1, k2=k2, lambda_value=lam, square=square)
    fast = rr.re_ranking(*mats, k1=k1, k2=k2, lambda_value=lam, square=square)
    assert fast.dtype == np.float32 and fast.shape == (num_q, num_g)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-5)
    a, b = evaluate_rank(ref, *ids, max_rank=5), evaluate_rank(fast, *ids, max_rank=5)
    assert a.mAP == b.mAP and a.mINP == b.mINP
    np.testing.assert_array_equal(a.cmc, b.cmc)


def test_reranking_changes_and_helps_on_clustered_data():
    mats, ids, _ = clustered(3, 40, 160, ids=12)
    before = evaluate_rank(mats[0], *ids)
    after = evaluate_rank(rr.re_ranking(*mats), *ids)
    assert after.mAP > before.mAP  # re-ranking uses the gallery's structure


def test_small_blocks_give_the_same_result(monkeypatch):
    mats, _, _ = clustered(1, 25, 70)
    full = rr.re_ranking(*mats)
    monkeypatch.setattr(rr, "_BLOCK_ELEMS", 200)  # row blocks of 2 rows
    monkeypatch.setattr(rr, "_PAIR_BUDGET", 50)  # Jaccard blocks of 1 query
    np.testing.assert_array_equal(rr.re_ranking(*mats), full)
    blocks = list(rr.iter_rerank(rr.MatrixDistances(*mats)))
    assert len(blocks) == 25 and [s for s, _ in blocks] == list(range(25))


def test_from_features_equals_from_matrices():
    _, ids, feats = clustered(5, 30, 80)
    qf = torch.from_numpy(feats[:30].astype(np.float32))
    gf = torch.from_numpy(feats[30:].astype(np.float32))
    for metric in ("euclidean", "cosine"):
        mats = (
            compute_distance(qf, gf, metric),
            compute_distance(qf, qf, metric),
            compute_distance(gf, gf, metric),
        )
        expected = re_ranking_reference(*(m.numpy() for m in mats))
        got = rerank_features(qf, gf, metric=metric)
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert evaluate_rank(got, *ids).mAP == pytest.approx(evaluate_rank(expected, *ids).mAP)


class L1Model(torch.nn.Module):
    """A model with its own distance (like DuATM): L1 between features."""

    own_distance = True
    calls = 0

    def compute_distance(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        L1Model.calls += 1
        return torch.cdist(q, g, p=1)


def test_model_distance_goes_through_blocks(monkeypatch):
    _, _, feats = clustered(2, 12, 40)
    f = torch.from_numpy(feats.astype(np.float32))
    qf, gf = f[:12], f[12:]
    d = torch.cdist(f, f, p=1).numpy()
    np.fill_diagonal(d, 0)
    expected = re_ranking_reference(d[:12, 12:], d[:12, :12], d[12:, 12:])
    monkeypatch.setattr(rr, "_BLOCK_ELEMS", 52 * 10)  # 10 rows per block
    L1Model.calls = 0
    got = rerank_features(qf, gf, model=L1Model())
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert L1Model.calls > 5  # the model was called block by block, never on all 52 x 52


def test_bad_arguments_are_one_line_errors():
    mats, _, _ = clustered(0, 5, 10)
    with pytest.raises(ConfigError, match="k1 must be a positive integer"):
        rr.re_ranking(*mats, k1=0)
    with pytest.raises(ConfigError, match="lambda must be in"):
        rr.re_ranking(*mats, lambda_value=1.5)
    with pytest.raises(ConfigError, match="q_q_dist"):
        rr.re_ranking(mats[0], mats[2], mats[1])
    bad = mats[2].copy()
    bad[3, 4] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        rr.re_ranking(mats[0], mats[1], bad)
    with pytest.raises(ConfigError, match="metric must be one of euclidean, cosine"):
        rerank_features(np.zeros((2, 3)), np.zeros((4, 3)), metric="manhattan")


def test_tiny_sets():
    # fewer items than k1 + 1: every item is a neighbour
    mats, _, _ = clustered(4, 2, 3)
    np.testing.assert_allclose(rr.re_ranking(*mats), re_ranking_reference(*mats), atol=1e-6)
    assert rr.re_ranking(np.zeros((0, 3)), np.zeros((0, 0)), mats[2]).shape == (0, 3)
