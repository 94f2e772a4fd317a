"""The Scorer: query blocks of distances ranked as they come equal the whole matrix ranked
by ``evaluate_rank``; the model's own distance and re-ranking go through the same blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnreid.errors import ConfigError
from attnreid.evaluation.features import FeatureSet
from attnreid.evaluation.metrics import evaluate_rank, rank_blocks
from attnreid.evaluation.scoring import Scorer
from attnreid.utils.distance import compute_distance, owns_distance
from tests.evaluation.reference import reference_cuhk03, reference_market
from tests.evaluation.rerank_reference import re_ranking_reference

REFERENCE = {"market": reference_market, "cuhk03": reference_cuhk03}


def id_arrays(rng, num_q, num_g, ids=15, cams=4):
    q_pids = rng.integers(1, ids, num_q)
    g_pids = rng.integers(0, ids, num_g)  # 0 = distractors
    return q_pids, g_pids, rng.integers(0, cams, num_q), rng.integers(0, cams, num_g)


def feature_sets(seed, num_q=60, num_g=300, dim=12):
    rng = np.random.default_rng(seed)
    q_pids, g_pids, q_cams, g_cams = id_arrays(rng, num_q, num_g)
    centers = rng.standard_normal((20, dim))
    f = lambda p: torch.from_numpy((centers[p] + rng.standard_normal((p.size, dim))).astype("f4"))  # noqa: E731
    q = FeatureSet(f(q_pids), q_pids, q_cams, [f"q{i}.jpg" for i in range(num_q)])
    g = FeatureSet(f(g_pids), g_pids, g_cams, [f"g{i}.jpg" for i in range(num_g)])
    return q, g


def split_blocks(d, rows):
    return ((s, d[s : s + rows]) for s in range(0, d.shape[0], rows))


def same_as_reference(result, ref):
    """``result`` (a RankResult) equals the literal per-query oracle's
    ``(cmc, mAP, mINP, valid, skipped)``."""
    cmc, mAP, mINP, valid, skipped = ref
    np.testing.assert_allclose(result.cmc, cmc, atol=1e-9)
    assert result.mAP == pytest.approx(mAP, abs=1e-9)
    assert result.mINP == pytest.approx(mINP, abs=1e-9)
    assert (result.num_valid_queries, result.num_skipped_queries) == (valid, skipped)


def same(a, b):
    np.testing.assert_array_equal(a.cmc, b.cmc)
    assert (a.mAP, a.mINP, a.num_valid_queries, a.num_skipped_queries) == (
        b.mAP,
        b.mINP,
        b.num_valid_queries,
        b.num_skipped_queries,
    )


@pytest.mark.parametrize("mode", ["market", "cuhk03"])
@pytest.mark.parametrize("rows", [1, 7, 64, 1000])
def test_blocks_equal_evaluate_rank(mode, rows):
    rng = np.random.default_rng(rows)
    ids = id_arrays(rng, 90, 250)
    d = rng.random((90, 250), dtype=np.float32)
    d[ids[0][:, None] == ids[1][None, :]] *= 0.3
    got = rank_blocks(split_blocks(d, rows), *ids, mode=mode, max_rank=20, query_block=16)
    same_as_reference(got, REFERENCE[mode](d, *ids, max_rank=20))
    same(evaluate_rank(d, *ids, mode=mode, max_rank=20, query_block=16), got)


def test_float64_and_ties_take_the_same_path():
    rng = np.random.default_rng(0)
    ids = id_arrays(rng, 40, 120)
    d = np.round(rng.random((40, 120)), 2)  # float64 with many ties
    # ties broken by gallery index, as the oracle's stable sort does
    same_as_reference(rank_blocks(split_blocks(d, 9), *ids), reference_market(d, *ids))
    same_as_reference(evaluate_rank(d.astype(np.float64), *ids), reference_market(d, *ids))
    # float64 distances that differ below float32's precision still rank in float64 order
    fine = 0.5 + rng.integers(0, 5, (40, 120)) * 1e-12
    same_as_reference(rank_blocks(split_blocks(fine, 9), *ids), reference_market(fine, *ids))


@pytest.mark.parametrize(
    ("metric", "normalize"), [("euclidean", False), ("cosine", False), ("euclidean", True)]
)
def test_features_blocked_equals_unblocked(metric, normalize):
    q, g = feature_sets(1)
    qf, gf = (F.normalize(s.features, dim=1) if normalize else s.features for s in (q, g))
    full = evaluate_rank(compute_distance(qf, gf, metric).numpy(), q.pids, g.pids, q.camids,
                         g.camids)  # fmt: skip
    for elems in (300, 300 * 7, 10**9):
        got = Scorer(metric=metric, normalize=normalize, block_elems=elems).score(q, g)
        same(full, got)


def test_distance_blocks_are_bounded():
    q, g = feature_sets(2)
    shapes = [b.shape for _, b in Scorer(block_elems=3000).blocks(q.features, g.features)]
    assert all(r * c <= 3000 for r, c in shapes) and sum(r for r, _ in shapes) == len(q)


class L1Model(torch.nn.Module):
    own_distance = True

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[int] = []

    def compute_distance(self, qf, gf):
        self.rows.append(qf.shape[0])
        return torch.cdist(qf, gf, p=1)


def test_model_distance_goes_through_the_blocks():
    q, g = feature_sets(3)
    model = L1Model()
    full = Scorer(model).score(q, g)
    assert model.rows == [len(q)]
    model.rows.clear()
    got = Scorer(model, block_elems=len(g) * 8).score(q, g)
    same(full, got)
    assert max(model.rows) <= 8 and sum(model.rows) == len(q)  # each query row once


def test_rerank_through_the_scorer_equals_oracle():
    q, g = feature_sets(4, num_q=25, num_g=120)
    qf, gf = q.features, g.features
    mats = [compute_distance(a, b).numpy() for a, b in ((qf, gf), (qf, qf), (gf, gf))]
    expected = evaluate_rank(re_ranking_reference(*mats), q.pids, g.pids, q.camids, g.camids)
    got = Scorer(rerank=True).score(q, g)
    assert got.mAP == pytest.approx(expected.mAP, abs=1e-9)
    np.testing.assert_allclose(got.cmc, expected.cmc)
    plain = Scorer().score(q, g)
    assert got.mAP != plain.mAP


def test_blocks_must_cover_the_queries_in_order():
    rng = np.random.default_rng(0)
    ids = id_arrays(rng, 10, 30)
    d = rng.random((10, 30), dtype=np.float32)
    with pytest.raises(ConfigError, match="does not continue"):
        rank_blocks([(0, d[:4]), (5, d[5:])], *ids)
    with pytest.raises(ConfigError, match="covered 4 of 10"):
        rank_blocks([(0, d[:4])], *ids)
    with pytest.raises(ConfigError, match="evaluation mode must be one of market, cuhk03"):
        rank_blocks([(0, d)], *ids, mode="duke")


def test_duatm_distance_goes_through_the_blocks():
    from attnreid.models import build_model, list_models

    if "duatm" not in list_models():
        pytest.skip("the DuATM model is not registered")
    torch.manual_seed(0)
    model = build_model("duatm", 5, "none").eval()
    with torch.no_grad():
        feats = model(torch.randn(26, 3, 64, 32))  # (26, S, D) sequences
    rng = np.random.default_rng(0)
    pids = rng.integers(0, 4, 26)
    cams = np.arange(26) % 3
    q = FeatureSet(feats[:6], pids[:6], cams[:6], [f"q{i}" for i in range(6)])
    g = FeatureSet(feats[6:], pids[6:], cams[6:], [f"g{i}" for i in range(20)])
    same(Scorer(model).score(q, g), Scorer(model, block_elems=2 * len(g)).score(q, g))
    with torch.no_grad():
        mats = [model.compute_distance(a, b).numpy() for a, b in ((feats[:6], feats[6:]),
                (feats[:6], feats[:6]), (feats[6:], feats[6:]))]  # fmt: skip
    expected = evaluate_rank(re_ranking_reference(*mats), q.pids, g.pids, q.camids, g.camids)
    got = Scorer(model, rerank=True).score(q, g)
    assert got.mAP == pytest.approx(expected.mAP, abs=1e-6)


def test_the_model_type_declares_its_own_distance():
    from attnreid.models import build_model

    mobile = {"backbone": "mobilenet_v2", "dim": 16}
    assert owns_distance(build_model("duatm", 3, **mobile))
    assert not owns_distance(build_model("duatm", 3, matching="avgpool", **mobile))
    assert owns_distance(build_model("sa_resnet", 3, backbone="resnet18"))
    plain_distance = build_model("sa_resnet", 3, backbone="resnet18", distance_norm="none")
    assert not owns_distance(plain_distance) and not owns_distance(build_model("resnet18", 3))
    assert Scorer(plain_distance).model is None and owns_distance(L1Model())


def test_scorer_from_config_and_its_index_metric():
    from attnreid.config import load_config

    e = load_config(None, ["eval.metric=cosine", "eval.rerank_k1=12"])["eval"]
    s = Scorer.from_config(None, e, rerank=True, max_rank=None)
    assert (s.metric, s.rerank, s.max_rank, s.rerank_params) == ("cosine", True, 50, (12, 6, 0.3))
    assert s.index_metric == "cosine" and Scorer(normalize=True).index_metric == "cosine"
    assert Scorer().index_metric == "euclidean"
    with pytest.raises(ConfigError, match="metric must be one of euclidean, cosine, got 'l1'"):
        Scorer(metric="l1")
    q, g = feature_sets(5, num_q=48, num_g=40)
    whole = np.concatenate([b for _, b in Scorer(block_elems=40 * 30).blocks(q, g)])  # 2 x 24
    np.testing.assert_array_equal(whole, compute_distance(q.features, g.features).numpy())
    np.testing.assert_allclose(Scorer().distances(q, g, [7, 2]), whole[[7, 2]], rtol=1e-6)
    reranked = np.concatenate([b for _, b in Scorer(rerank=True).blocks(q, g)])
    np.testing.assert_array_equal(Scorer(rerank=True).distances(q, g, [3, 41]), reranked[[3, 41]])
