"""The verification view against a brute-force count over every pair."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnreid.evaluation.verification import VerificationStats


def brute_verification(d, qp, qc, gp, gc, fmr):
    """Threshold, true match rate and pair counts at ``fmr``, counted pair by pair."""
    same = qp[:, None] == gp[None, :]
    valid = gp[None, :] != -1
    gen = d[same & (qc[:, None] != gc[None, :]) & valid]
    imp = np.sort(d[~same & valid])
    k = math.floor(fmr * imp.size)
    t = imp[k - 1] if k else -math.inf
    assert (imp <= t).mean() <= fmr  # the defining property
    return t, float((gen <= t).mean()), gen.size, imp.size


@pytest.mark.parametrize("blocks", [1, 3, 7])
def test_thresholds_and_rates_equal_brute_force(blocks):
    rng = np.random.default_rng(blocks)
    q, g = 60, 400
    qp, gp = rng.integers(0, 30, q), rng.integers(-1, 30, g)
    qc, gc = rng.integers(0, 3, q), rng.integers(0, 3, g)
    d = rng.random((q, g)) + 0.8 * (qp[:, None] != gp[None, :])  # genuine pairs nearer
    stats = VerificationStats(q * g, fmrs=(1e-1, 1e-2, 1e-3))
    for rows in np.array_split(np.arange(q), blocks):
        stats.update(d[rows], qp[rows], qc[rows], gp, gc)
    res = stats.result()
    for f, t, tmr in zip(res.fmrs, res.thresholds, res.tmrs):
        bt, btmr, n_gen, n_imp = brute_verification(d, qp, qc, gp, gc, f)
        assert (t, tmr) == (bt, btmr)
        assert (res.num_genuine, res.num_impostor) == (n_gen, n_imp)
    assert res.as_dict()["tpr@fpr=0.01"] == res.tmrs[1]
    counts, edges = res.impostor_hist
    per_block = [
        ((qp[r, None] != gp[None, :]) & (gp[None, :] != -1)).sum()
        for r in np.array_split(np.arange(q), blocks)
    ]
    assert counts.sum() == sum(min(n, 20000) for n in per_block)  # a sample of <= 20,000 each
    assert edges[0] <= d.min() + 1e-12 or edges[0] <= res.genuine.min()


def test_no_impostor_budget_means_no_match():
    stats = VerificationStats(10, fmrs=(1e-3,))
    d = np.array([[0.1, 0.9]])
    stats.update(d, np.array([1]), np.array([0]), np.array([1, 2]), np.array([1, 1]))
    res = stats.result()
    assert res.thresholds == [-math.inf] and res.tmrs == [0.0]  # floor(1e-3 x 1) = 0
