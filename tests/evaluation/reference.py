"""Oracle for the ranking metrics: a literal per-query loop, no vectorisation tricks.

It follows torchreid's ``eval_market1501`` / ``eval_cuhk03`` and fast-reid's mINP line by line,
with the two documented choices of :mod:`attnreid.evaluation.metrics`: a stable argsort (ties
broken by gallery index) and a CMC that stays at 1 past the end of a short kept list. The cuhk03
sampling uses the documented key scheme. Slow on purpose; only for tests.
"""

from __future__ import annotations

import numpy as np


def _cmc_row(raw_cmc: np.ndarray, max_rank: int) -> np.ndarray:
    """Clipped cumulative match curve of one ranked 0/1 list, padded to ``max_rank``."""
    cmc = raw_cmc.cumsum()
    cmc[cmc > 1] = 1
    out = np.ones(max_rank, dtype=np.float64)  # a list that ran out has found its match
    n = min(max_rank, cmc.size)
    out[:n] = cmc[:n]
    return out


def _ap(raw_cmc: np.ndarray) -> float:
    num_rel = raw_cmc.sum()
    tmp_cmc = raw_cmc.cumsum()
    tmp_cmc = np.asarray([x / (i + 1.0) for i, x in enumerate(tmp_cmc)]) * raw_cmc
    return float(tmp_cmc.sum() / num_rel)


def _inp(raw_cmc: np.ndarray) -> float:
    cmc = raw_cmc.cumsum()
    max_pos_idx = int(np.max(np.where(raw_cmc == 1)))
    return float(cmc[max_pos_idx] / (max_pos_idx + 1.0))  # fast-reid: before clipping cmc


def reference_market(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Returns ``(cmc, mAP, mINP, num_valid, num_skipped)``."""
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    all_cmc, all_ap, all_inp = [], [], []
    num_valid = 0
    for q_idx in range(num_q):
        order = np.argsort(distmat[q_idx], kind="stable")
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        keep = np.invert(remove)
        raw_cmc = (g_pids[order][keep] == q_pids[q_idx]).astype(np.int64)
        if not np.any(raw_cmc):
            continue
        num_valid += 1
        all_inp.append(_inp(raw_cmc))
        all_cmc.append(_cmc_row(raw_cmc, max_rank))
        all_ap.append(_ap(raw_cmc))
    if num_valid == 0:
        raise AssertionError("all query identities do not appear in gallery")
    cmc = np.asarray(all_cmc).sum(0) / num_valid
    return cmc, float(np.mean(all_ap)), float(np.mean(all_inp)), num_valid, num_q - num_valid


def reference_cuhk03(
    distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, num_repeats=10, seed=0
):
    """Returns ``(cmc, mAP, mINP, num_valid, num_skipped)``."""
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    rng = np.random.default_rng(seed)
    index_bits = max(1, (num_g - 1).bit_length())
    low = np.uint64((1 << index_bits) - 1)
    all_cmc, all_ap, all_inp = [], [], []
    num_valid = 0
    for q_idx in range(num_q):
        # drawn for every query, before knowing whether it is skipped
        keys = rng.integers(0, 2**64, size=(num_repeats, num_g), dtype=np.uint64)
        keys = (keys & ~low) | np.arange(num_g, dtype=np.uint64)

        order = np.argsort(distmat[q_idx], kind="stable")
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        keep = np.invert(remove)
        kept = order[keep]  # gallery indices, ranked, junk removed
        raw_cmc = (g_pids[kept] == q_pids[q_idx]).astype(np.int64)
        if not np.any(raw_cmc):
            continue
        num_valid += 1

        cmc = np.zeros(max_rank, dtype=np.float64)
        for r in range(num_repeats):
            best = {}  # identity -> position in the kept list of its sampled image
            for j, g in enumerate(kept):
                pid = g_pids[g]
                if pid not in best or keys[r, g] < keys[r, kept[best[pid]]]:
                    best[pid] = j
            mask = np.zeros(len(kept), dtype=bool)
            mask[list(best.values())] = True
            cmc += _cmc_row(raw_cmc[mask], max_rank)
        all_cmc.append(cmc / num_repeats)
        all_ap.append(_ap(raw_cmc))
        all_inp.append(_inp(raw_cmc))
    if num_valid == 0:
        raise AssertionError("all query identities do not appear in gallery")
    cmc = np.asarray(all_cmc).sum(0) / num_valid
    return cmc, float(np.mean(all_ap)), float(np.mean(all_inp)), num_valid, num_q - num_valid
