"""Evaluation edge cases equal the reference algorithm (``tests/evaluation/reference.py``):
queries without a valid match, all-junk galleries, tied distances, and an empty gallery
(a clear error), through the distance-matrix API and the feature-set API evaluation uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnreid.errors import DatasetError
from attnreid.evaluation.features import FeatureSet
from attnreid.evaluation.metrics import evaluate_rank
from attnreid.evaluation.scoring import Scorer
from tests.evaluation.reference import reference_cuhk03, reference_market


def _same(result, ref) -> None:
    cmc, mAP, mINP, valid, skipped = ref
    np.testing.assert_allclose(result.cmc, cmc, atol=1e-9)
    assert result.mAP == pytest.approx(mAP, abs=1e-9)
    assert result.mINP == pytest.approx(mINP, abs=1e-9)
    assert (result.num_valid_queries, result.num_skipped_queries) == (valid, skipped)


def _both_modes(d, qp, gp, qc, gc, max_rank=10) -> None:
    args = (np.asarray(d), np.asarray(qp), np.asarray(gp), np.asarray(qc), np.asarray(gc))
    _same(evaluate_rank(*args, max_rank=max_rank), reference_market(*args, max_rank=max_rank))
    _same(
        evaluate_rank(*args, max_rank=max_rank, mode="cuhk03"),
        reference_cuhk03(*args, max_rank=max_rank),
    )


def test_queries_without_a_valid_match_are_skipped_as_in_the_reference():
    rng = np.random.default_rng(0)
    qp, qc = np.array([1, 2, 3, 4, 5, 6]), np.array([0, 1, 0, 1, 0, 1])
    # identity 3: absent from the gallery; identity 4: only in the query's own camera (junk)
    gp = np.array([1, 1, 2, 4, 5, 6, 6, 0, 0, 7])
    gc = np.array([1, 0, 0, 1, 1, 0, 1, 0, 1, 0])
    d = rng.random((6, 10)).astype(np.float32)
    _both_modes(d, qp, gp, qc, gc)
    assert evaluate_rank(d, qp, gp, qc, gc).num_skipped_queries == 2


def test_a_gallery_that_is_all_junk_for_every_query():
    qp, qc = np.array([1, 2]), np.array([0, 1])
    gp, gc = np.array([1, 1, 2]), np.array([0, 0, 1])  # same identity, same camera only
    d = np.random.default_rng(1).random((2, 3))
    with pytest.raises(AssertionError, match="do not appear in gallery"):
        reference_market(d, qp, gp, qc, gc)
    with pytest.raises(DatasetError) as exc:
        evaluate_rank(d, qp, gp, qc, gc)
    assert str(exc.value) == (
        "no query has a true match in the gallery (all 2 queries skipped): no gallery image "
        "shares a query's identity from another camera; check the ids and camera ids"
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_tied_distances_are_broken_by_gallery_index_as_in_the_reference(dtype):
    rng = np.random.default_rng(2)
    qp, qc = rng.integers(0, 4, 12), rng.integers(0, 3, 12)
    gp, gc = rng.integers(0, 4, 40), rng.integers(0, 3, 40)
    d = rng.integers(0, 3, (12, 40)).astype(dtype)  # three distinct values: many ties
    _both_modes(d, qp, gp, qc, gc, max_rank=20)
    flat = np.zeros((12, 40), dtype)  # every distance tied
    _both_modes(flat, qp, gp, qc, gc, max_rank=20)


def _fs(n: int, dim: int = 4) -> FeatureSet:
    return FeatureSet(
        torch.randn(n, dim), np.arange(n) % 3, np.arange(n) % 2, [f"{i}.jpg" for i in range(n)]
    )


def test_empty_gallery_is_a_clear_error():
    with pytest.raises(DatasetError, match=r"^the gallery is empty: distmat has 0 columns$"):
        evaluate_rank(np.zeros((3, 0)), [1, 2, 3], [], [0, 0, 0], [])
    with pytest.raises(DatasetError, match=r"^the gallery is empty: there is nothing to evaluate"):
        Scorer().score(_fs(3), _fs(0))
    with pytest.raises(DatasetError, match=r"^the query set is empty: there is nothing to"):
        Scorer().score(_fs(0), _fs(5))


def test_feature_sets_are_scored_like_the_reference():
    q, g = _fs(6), _fs(15)
    d = torch.cdist(q.features, g.features).pow(2).numpy()
    ref = reference_market(d, q.pids, g.pids, q.camids, g.camids, max_rank=10)
    _same(Scorer(max_rank=10).score(q, g), ref)
    # scoring in smaller query blocks (large galleries) gives the same numbers
    _same(Scorer(max_rank=10, block_elems=1).score(q, g), ref)
