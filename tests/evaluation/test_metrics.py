"""CMC / mAP / mINP: the vectorised implementation against the per-query oracle."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attnreid.errors import AttnReidError, ConfigError, DatasetError
from attnreid.evaluation import _rank_kernels as rk
from attnreid.evaluation.metrics import RankResult, evaluate_rank


def _load_reference():
    name = "attnreid_tests_eval_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("reference.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


ref = _load_reference()
ATOL = 1e-6


def assert_matches(result: RankResult, expected: tuple) -> None:
    cmc, m_ap, m_inp, num_valid, num_skipped = expected
    assert result.cmc.shape == cmc.shape
    np.testing.assert_allclose(result.cmc, cmc, rtol=0, atol=ATOL)
    assert result.mAP == pytest.approx(m_ap, abs=ATOL)
    assert result.mINP == pytest.approx(m_inp, abs=ATOL)
    assert result.num_valid_queries == num_valid
    assert result.num_skipped_queries == num_skipped


def random_case(seed: int, kind: str):
    """Few identities (many matches), few cameras (much junk), distractors 0 and -1 ids."""
    rng = np.random.default_rng(seed)
    num_q = int(rng.integers(1, 40))
    num_g = int(rng.integers(1, 120))
    num_ids = int(rng.integers(1, 8))
    num_cams = int(rng.integers(1, 4))
    q_pids = rng.integers(1, num_ids + 1, num_q)
    g_pids = rng.integers(-1, num_ids + 1, num_g)  # includes distractor 0 and junk -1
    q_camids = rng.integers(0, num_cams, num_q)
    g_camids = rng.integers(0, num_cams, num_g)
    if kind == "int_ties":  # integer-valued float32: lots of ties
        d = rng.integers(0, 4, (num_q, num_g)).astype(np.float32)
    elif kind == "float32":
        d = rng.random((num_q, num_g), dtype=np.float32)
    elif kind == "float64_ties":  # not float32-representable: the argsort + tie-repair path
        d = rng.integers(0, 3, (num_q, num_g)) + np.where(
            rng.random((num_q, num_g)) < 0.5, 0.1, 0.0
        )
    elif kind == "signed":  # negatives, -0.0 vs +0.0 and infinities
        d = rng.choice(
            np.array([-np.inf, -1.5, -0.0, 0.0, 0.5, np.inf], np.float32), (num_q, num_g)
        )
    elif kind == "int64":
        d = rng.integers(-(2**40), 2**40, (num_q, num_g))
        d[:, ::3] = d[:, :1]  # ties
    else:
        raise AssertionError(kind)
    return d, q_pids, g_pids, q_camids, g_camids


KINDS = ("int_ties", "float32", "float64_ties", "signed", "int64")


@pytest.mark.parametrize("kind", KINDS)
def test_market_matches_oracle_random(kind):
    checked = 0
    for seed in range(60):
        d, qp, gp, qc, gc = random_case(seed, kind)
        max_rank = [1, 5, 50][seed % 3]
        try:
            expected = ref.reference_market(d, qp, gp, qc, gc, max_rank)
        except AssertionError:  # no query with a match: see test_all_queries_skipped
            continue
        for block in (1, 7, 512):
            result = evaluate_rank(d, qp, gp, qc, gc, max_rank=max_rank, query_block=block)
            assert_matches(result, expected)
        checked += 1
    assert checked > 30


@pytest.mark.parametrize("kind", ["int_ties", "float64_ties"])
def test_cuhk03_matches_oracle_random(kind):
    checked = 0
    for seed in range(25):
        d, qp, gp, qc, gc = random_case(seed, kind)
        try:
            expected = ref.reference_cuhk03(d, qp, gp, qc, gc, 20, num_repeats=4, seed=seed)
        except AssertionError:
            continue
        for block in (1, 512):
            result = evaluate_rank(
                d,
                qp,
                gp,
                qc,
                gc,
                max_rank=20,
                mode="cuhk03",
                query_block=block,
                num_repeats=4,
                seed=seed,
            )
            assert_matches(result, expected)
        checked += 1
    assert checked > 10


def test_larger_case_with_market_like_ids():
    rng = np.random.default_rng(123)
    num_q, num_g = 300, 2000
    q_pids = rng.integers(1, 60, num_q)
    g_pids = np.concatenate([rng.integers(1, 60, 1700), np.zeros(200, int), -np.ones(100, int)])
    q_camids, g_camids = rng.integers(1, 7, num_q), rng.integers(1, 7, num_g)
    d = rng.random((num_q, num_g), dtype=np.float32)
    d[q_pids[:, None] == g_pids[None, :]] *= 0.5  # signal: matches tend to be closer
    d[:, 5:50] = d[:, 4:5]  # a long run of ties
    expected = ref.reference_market(d, q_pids, g_pids, q_camids, g_camids, 50)
    assert_matches(evaluate_rank(d, q_pids, g_pids, q_camids, g_camids), expected)
    assert_matches(
        evaluate_rank(
            d.astype(np.float64) + 1e-9, q_pids, g_pids, q_camids, g_camids, query_block=64
        ),
        expected,
    )


# Hand-computed case. Gallery (index: pid, cam):
#   g0: 1, 0   g1: 2, 1   g2: 1, 1   g3: 0, 1 (distractor)   g4: 1, 2   g5: 3, 0
HAND_G_PIDS = [1, 2, 1, 0, 1, 3]
HAND_G_CAMS = [0, 1, 1, 1, 2, 0]
HAND_Q_PIDS = [1, 2, 3, 1, 4]
HAND_Q_CAMS = [0, 0, 0, 1, 0]
HAND_D = np.array(
    [
        # q0 (pid 1, cam 0): ranking g0 g2 g1 g3 g4 g5; g0 is junk (pid 1, cam 0).
        #   kept: g2+ g1 g3 g4+ g5 -> matches at kept ranks 1 and 4
        #   AP = (1/1 + 2/4) / 2 = 0.75, INP = 2/4 = 0.5, first match rank 1
        [0.1, 0.3, 0.2, 0.4, 0.5, 0.6],
        # q1 (pid 2, cam 0): ranking g2 g3 g4 g5 g0 g1; no junk (g1 is camera 1)
        #   match at rank 6: AP = 1/6, INP = 1/6, first match rank 6
        [0.5, 0.9, 0.1, 0.2, 0.3, 0.4],
        # q2 (pid 3, cam 0): its only gallery image g5 is camera 0 -> junk -> skipped
        [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
        # q3 (pid 1, cam 1): g3 first, then a 5-way tie broken by index: g0 g1 g2 g4 g5;
        #   g2 is junk. kept: g3 g0+ g1 g4+ g5 -> matches at kept ranks 2 and 4
        #   AP = (1/2 + 2/4) / 2 = 0.5, INP = 2/4 = 0.5, first match rank 2
        [0.2, 0.2, 0.2, 0.1, 0.2, 0.2],
        # q4 (pid 4): not in the gallery -> skipped
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    ],
    dtype=np.float32,
)


def test_hand_computed_market():
    result = evaluate_rank(HAND_D, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS)
    # 3 scored queries (q0, q1, q3) with first-match ranks 1, 6, 2; max_rank 50 -> G = 6
    np.testing.assert_allclose(result.cmc, [1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 1.0], atol=1e-12)
    assert result.mAP == pytest.approx((0.75 + 1 / 6 + 0.5) / 3, abs=1e-12)  # 17/36
    assert result.mINP == pytest.approx((0.5 + 1 / 6 + 0.5) / 3, abs=1e-12)  # 7/18
    assert (result.num_valid_queries, result.num_skipped_queries) == (3, 2)
    assert result.rank(1) == pytest.approx(1 / 3)
    assert result.rank(6) == pytest.approx(1.0)
    assert_matches(
        result,
        ref.reference_market(HAND_D, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS),
    )
    short = evaluate_rank(HAND_D, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, max_rank=3)
    np.testing.assert_allclose(short.cmc, [1 / 3, 2 / 3, 2 / 3], atol=1e-12)


def test_hand_computed_as_dict():
    result = evaluate_rank(HAND_D, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS)
    out = result.as_dict()
    assert out["rank1"] == pytest.approx(1 / 3)
    assert out["rank5"] == pytest.approx(2 / 3)
    assert math.isnan(out["rank10"]) and math.isnan(out["rank20"])  # beyond the curve (G = 6)
    assert out["mAP"] == pytest.approx(17 / 36)
    assert out["mINP"] == pytest.approx(7 / 18)
    assert out["num_valid_queries"] == 3 and out["num_skipped_queries"] == 2
    assert all(isinstance(v, (int, float)) for v in out.values())
    with pytest.raises(ConfigError, match=r"\[1, 6\]"):
        result.rank(7)
    with pytest.raises(ConfigError):
        result.rank(0)


def test_ties_are_broken_by_gallery_index():
    # All distances equal: the ranking is the gallery order. Query pid 1 cam 0.
    g_pids = [2, 1, 3, 1]
    g_cams = [1, 1, 1, 1]
    result = evaluate_rank(np.zeros((1, 4)), [1], g_pids, [0], g_cams)
    # matches at ranks 2 and 4: AP = (1/2 + 2/4) / 2, INP = 2/4
    np.testing.assert_allclose(result.cmc, [0, 1, 1, 1])
    assert result.mAP == pytest.approx(0.5)
    assert result.mINP == pytest.approx(0.5)
    # Same distances in reverse gallery order give a different (but again index-ordered) answer
    rev = evaluate_rank(np.zeros((1, 4)), [1], g_pids[::-1], [0], g_cams)
    assert rev.mAP == pytest.approx((1 / 1 + 2 / 3) / 2)


def test_junk_same_pid_same_camera_is_removed():
    # Only g0 (same pid, same camera) precedes the true match g1: it must not count.
    d = np.array([[0.0, 1.0, 2.0]])
    result = evaluate_rank(d, [5], [5, 5, 7], [0], [0, 1, 1])
    np.testing.assert_allclose(result.cmc, [1.0, 1.0, 1.0])
    assert result.mAP == pytest.approx(1.0)
    assert result.mINP == pytest.approx(1.0)


def test_same_pid_other_camera_and_distractors():
    # distractor 0 and -1 ids rank first; they are ordinary non-matching items
    d = np.array([[0.0, 1.0, 2.0, 3.0]])
    result = evaluate_rank(d, [5], [0, -1, 5, 5], [0], [0, 0, 1, 0])
    # g3 is junk (pid 5 cam 0); the match g2 is at kept rank 3
    np.testing.assert_allclose(result.cmc, [0, 0, 1, 1])
    assert result.mAP == pytest.approx(1 / 3)
    assert result.mINP == pytest.approx(1 / 3)


def test_skipped_queries_are_counted():
    d = np.random.default_rng(0).random((4, 5))
    g_pids, g_cams = [1, 1, 2, 0, -1], [0, 1, 0, 0, 0]
    #           q0: matches g1     q1: only junk  q2: pid absent  q3: matches g1
    result = evaluate_rank(d, [1, 2, 9, 1], g_pids, [0, 0, 0, 0], g_cams)
    assert (result.num_valid_queries, result.num_skipped_queries) == (2, 2)
    assert_matches(result, ref.reference_market(d, [1, 2, 9, 1], g_pids, [0, 0, 0, 0], g_cams))


def test_all_queries_skipped_raises():
    d = np.zeros((2, 3))
    with pytest.raises(DatasetError, match="no query has a true match"):
        evaluate_rank(d, [1, 2], [1, 2, 3], [0, 0], [0, 0, 0])  # all junk
    with pytest.raises(DatasetError, match="all 2 queries skipped"):
        evaluate_rank(d, [7, 8], [1, 2, 3], [0, 0], [0, 0, 0], mode="cuhk03")


def valid_random_case(seed: int, kind: str):
    """The first random case from ``seed`` on that has at least one scored query."""
    while True:
        case = random_case(seed, kind)
        try:
            ref.reference_market(*case)
            return case
        except AssertionError:
            seed += 1


def test_max_rank_larger_than_gallery():
    d, qp, gp, qc, gc = valid_random_case(3, "int_ties")
    num_g = d.shape[1]
    result = evaluate_rank(d, qp, gp, qc, gc, max_rank=num_g + 100)
    assert result.cmc.shape == (num_g,)
    assert result.cmc[-1] == pytest.approx(1.0)
    assert_matches(result, ref.reference_market(d, qp, gp, qc, gc, num_g + 100))
    cuhk = evaluate_rank(d, qp, gp, qc, gc, max_rank=num_g + 100, mode="cuhk03")
    assert cuhk.cmc.shape == (num_g,)
    assert cuhk.cmc[-1] == pytest.approx(1.0)


def test_cmc_is_the_oracles_and_monotone():
    checked = 0
    for seed in range(10):
        d, qp, gp, qc, gc = random_case(seed, "float32")
        try:
            result = evaluate_rank(d, qp, gp, qc, gc)
        except DatasetError:
            continue
        expected = ref.reference_market(d, qp, gp, qc, gc)
        assert_matches(result, expected)
        num_valid = expected[3]
        # rank-k accuracy: the share of scored queries whose first match is within rank k
        # (recomputed from the ranked lists, not from the oracle's cmc)
        first = []
        for i in range(len(qp)):
            order = np.argsort(d[i], kind="stable")
            kept = order[~((gp[order] == qp[i]) & (gc[order] == qc[i]))]
            hits = np.flatnonzero(gp[kept] == qp[i])
            if hits.size:
                first.append(hits[0] + 1)
        assert len(first) == num_valid == result.num_valid_queries
        for k in range(1, result.cmc.size + 1):
            assert result.rank(k) == pytest.approx(np.mean(np.array(first) <= k), abs=1e-12)
        assert np.all(np.diff(result.cmc) >= 0)
        checked += 1
    assert checked >= 5


def test_cuhk03_one_image_per_identity_equals_market():
    # With one gallery image per identity the sampling is deterministic.
    rng = np.random.default_rng(5)
    d = rng.random((30, 12), dtype=np.float32)
    qp = rng.integers(0, 12, 30)
    gp = np.arange(12)
    qc, gc = np.zeros(30, int), np.ones(12, int)
    market = evaluate_rank(d, qp, gp, qc, gc, max_rank=10)
    cuhk = evaluate_rank(d, qp, gp, qc, gc, max_rank=10, mode="cuhk03", seed=3)
    np.testing.assert_allclose(cuhk.cmc, market.cmc, atol=1e-12)
    assert cuhk.mAP == pytest.approx(market.mAP) and cuhk.mINP == pytest.approx(market.mINP)


def test_cuhk03_seed_and_block_behaviour():
    rng = np.random.default_rng(11)
    d = rng.random((40, 80), dtype=np.float32)
    qp, gp = rng.integers(0, 10, 40), rng.integers(0, 10, 80)
    qc, gc = rng.integers(0, 2, 40), rng.integers(0, 2, 80)
    a = evaluate_rank(d, qp, gp, qc, gc, mode="cuhk03", seed=1, query_block=3)
    b = evaluate_rank(d, qp, gp, qc, gc, mode="cuhk03", seed=1, query_block=512)
    c = evaluate_rank(d, qp, gp, qc, gc, mode="cuhk03", seed=2)
    np.testing.assert_array_equal(a.cmc, b.cmc)
    assert a.mAP == b.mAP
    assert not np.array_equal(a.cmc, c.cmc)  # the sampling depends on the seed ...
    assert a.mAP == c.mAP and a.mINP == c.mINP  # ... AP / INP use the full ranking
    assert_matches(a, ref.reference_cuhk03(d, qp, gp, qc, gc, 50, num_repeats=10, seed=1))


def test_torch_and_list_inputs():
    d, qp, gp, qc, gc = valid_random_case(7, "float32")
    expected = evaluate_rank(d, qp, gp, qc, gc)
    got = evaluate_rank(
        torch.from_numpy(d), torch.from_numpy(qp), list(gp), torch.from_numpy(qc), tuple(gc)
    )
    np.testing.assert_array_equal(got.cmc, expected.cmc)
    assert got.mAP == expected.mAP and got.mINP == expected.mINP
    half = evaluate_rank(torch.from_numpy(d).to(torch.bfloat16), qp, gp, qc, gc)
    assert half.num_valid_queries == expected.num_valid_queries


def test_non_contiguous_distmat():
    d, qp, gp, qc, gc = valid_random_case(8, "int_ties")
    dt = np.asfortranarray(d)
    assert_matches(evaluate_rank(dt, qp, gp, qc, gc), ref.reference_market(d, qp, gp, qc, gc))


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"mode": "duke"}, ConfigError, "evaluation mode must be one of market, cuhk03, got "),
        ({"max_rank": 0}, ConfigError, "max_rank"),
        ({"query_block": 0}, ConfigError, "query_block"),
        ({"num_repeats": 0}, ConfigError, "num_repeats"),
        ({"max_rank": 2.5}, ConfigError, "max_rank"),
        ({"distmat": np.zeros(3)}, ConfigError, "2-D"),
        ({"distmat": np.zeros((2, 3), complex)}, ConfigError, "real numbers"),
        ({"q_pids": [1, 2, 3]}, ConfigError, "q_pids has 3 entries"),
        ({"q_camids": [0]}, ConfigError, "q_camids has 1 entries"),
        ({"g_pids": [1, 2]}, ConfigError, "g_pids has 2 entries"),
        ({"g_camids": np.zeros((3, 1))}, ConfigError, "1-D"),
        ({"distmat": np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]])}, ConfigError, "NaN"),
    ],
)
def test_invalid_inputs(kwargs, exc, pattern):
    args = {
        "distmat": np.zeros((2, 3)),
        "q_pids": [1, 2],
        "g_pids": [1, 2, 3],
        "q_camids": [0, 0],
        "g_camids": [1, 1, 1],
    }
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        evaluate_rank(**args)


def test_nan_reported_with_row_and_empty_sets():
    d = np.zeros((3, 2), np.float32)
    d[2, 1] = np.nan
    with pytest.raises(ConfigError, match="query row 2"):
        evaluate_rank(d, [1, 1, 1], [1, 1], [0, 0, 0], [1, 1])
    with pytest.raises(DatasetError, match="gallery is empty"):
        evaluate_rank(np.zeros((2, 0)), [1, 2], [], [0, 0], [])
    with pytest.raises(DatasetError, match="query set is empty"):
        evaluate_rank(np.zeros((0, 3)), [], [1, 2, 3], [], [0, 0, 0])
    assert issubclass(DatasetError, AttnReidError) and issubclass(ConfigError, AttnReidError)


# ----------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.float16])
def test_stable_argsort_equals_numpy_stable(dtype):
    rng = np.random.default_rng(0)
    for _ in range(20):
        rows, cols = int(rng.integers(1, 20)), int(rng.integers(1, 300))
        block = rng.integers(-3, 4, (rows, cols)).astype(dtype)
        if np.issubdtype(dtype, np.floating):
            block[rng.random(block.shape) < 0.1] = -0.0
            block[rng.random(block.shape) < 0.05] = np.inf
            block = block + (rng.random(block.shape) < 0.3) * 0.1  # float64: not float32
            block = block.astype(dtype)
        expected = np.argsort(block, axis=1, kind="stable")
        np.testing.assert_array_equal(rk.stable_argsort(block), expected)


def test_float64_values_that_collide_in_float32():
    # 1 + 1e-12 etc. all round to 1.0f: the float32 packed sort ties them, the repair must not.
    block = np.array([[1 + 1e-12, 1.0, 1 + 2e-12, 1.0, -1e300, 1e300, np.inf, 1e-50, -1e-50]])
    expected = np.argsort(block, axis=1, kind="stable")
    np.testing.assert_array_equal(expected, [[4, 8, 7, 1, 3, 0, 2, 5, 6]])
    np.testing.assert_array_equal(rk.stable_argsort(block), expected)
    big = np.array([[2**40 + 1, 2**40, 2**40 + 1, 3, 2**40]], dtype=np.int64)
    np.testing.assert_array_equal(rk.stable_argsort(big), [[3, 1, 4, 0, 2]])
    # and through evaluate_rank: the match (g0) is the nearest only in float64
    d = np.array([[1 + 1e-12, 1 + 2e-12, 1 + 3e-12]])
    near = evaluate_rank(d, [1], [1, 2, 3], [0], [1, 1, 1])
    far = evaluate_rank(d[:, ::-1].copy(), [1], [1, 2, 3], [0], [1, 1, 1])
    assert near.mAP == 1.0 and far.mAP == pytest.approx(1 / 3)


def test_packed_positions():
    rng = np.random.default_rng(1)
    block = rng.integers(0, 5, (6, 40)).astype(np.float32)
    keys = rk.packed_sorted_keys(block)
    rows = np.repeat(np.arange(6), 40)
    gidx = np.tile(np.arange(40), 6)
    pos = rk.packed_positions(keys, block, rows, gidx)
    expected = rk.inverse_positions(np.argsort(block, axis=1, kind="stable"))
    np.testing.assert_array_equal(pos.reshape(6, 40), expected)


def test_packed_positions_with_repair():
    rng = np.random.default_rng(2)
    block = 1 + rng.integers(0, 4, (5, 30)) * 1e-12  # all equal in float32
    block[:, ::4] = 0.5
    b32, lossless = rk.to_float32(block)
    assert not lossless
    keys = rk.packed_sorted_keys(b32)
    repair = rk.tie_repair(keys, block)
    assert repair is not None
    rows = np.repeat(np.arange(5), 30)
    gidx = np.tile(np.arange(30), 5)
    pos = rk.packed_positions(keys, b32, rows, gidx, repair)
    expected = rk.inverse_positions(np.argsort(block, axis=1, kind="stable"))
    np.testing.assert_array_equal(pos.reshape(5, 30), expected)
