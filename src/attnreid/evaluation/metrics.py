"""Ranking metrics of re-ID: CMC, mAP and mINP, exactly as torchreid / fast-reid compute them.

Protocol
--------
Every query image is compared with every gallery image; the gallery is ranked by increasing
distance. Before scoring, the gallery items that show the query's identity **from the query's own
camera** are removed from that query's ranking ("junk": finding the same person in the same
camera view is trivial). The remaining items of the query's identity are its *true matches*.
A query without any true match is **skipped** (not scored) and counted in
:attr:`RankResult.num_skipped_queries`, as torchreid and fast-reid do. Identities are compared by
plain equality: a distractor id (Market-1501's ``0``) or a ``-1`` in the gallery is just another
identity that never matches a real query. (torchreid and fast-reid drop Market-1501's ``-1``
junk images when they load the dataset; pass arrays without them to reproduce their numbers.)

With ``r_1 < r_2 < ... < r_n`` the 1-based ranks of the ``n`` true matches among the kept items:

* **CMC** (rank-k accuracy): ``cmc[k-1]`` = fraction of scored queries with ``r_1 <= k``.
* **AP** = ``(1/n) * sum_i i / r_i`` (precision at each true match, averaged); **mAP** is its mean
  over scored queries.
* **INP** = ``n / r_n`` (fast-reid / Ye et al. 2021, "Deep learning for person re-identification:
  a survey and outlook": the fraction of the list up to the hardest match that is correct);
  **mINP** is its mean over scored queries.

``mode="market"`` equals torchreid's ``eval_market1501`` and fast-reid's ``evaluate_rank`` (which
adds mINP) up to float rounding (checked against a per-query loop to ``1e-6``), with two
documented differences:

1. **Ties** in distance are broken by gallery index (a stable sort), so results are deterministic.
   torchreid/fast-reid use numpy's default, unstable ``argsort``, whose tie order is unspecified;
   with tie-free distances the results are identical.
2. If a query keeps fewer than ``max_rank`` gallery items (only possible when the gallery is tiny)
   its CMC stays at 1 beyond its list's end. torchreid's Python code fails on such ragged lists
   and its Cython code pads with stale or zero values.

As in torchreid, ``max_rank`` is lowered to the gallery size when the gallery is smaller.

``mode="cuhk03"`` is torchreid's ``eval_cuhk03`` single-gallery-shot protocol (CUHK03 classic
split): junk is removed as above; then, ``num_repeats`` times, **one** kept gallery image per
identity is drawn uniformly at random and the CMC is computed on that sampled list (``r_1`` is
then the rank among the sampled images); a query's CMC is the mean over the repeats. AP and INP
are computed on the full kept ranking, not the samples, as torchreid does for AP (torchreid has no
mINP here). The sampling is reproducible and independent of ``query_block``:
``rng = numpy.random.default_rng(seed)``; for query ``i`` (in order, every query, scored or not)
``keys = rng.integers(0, 2**64, size=(num_repeats, G), dtype=numpy.uint64)``, whose low
``b = bit_length(G - 1)`` bits are replaced by the gallery index (which makes keys unique); in
repeat ``r`` the sampled image of each identity is its kept image with the smallest
``keys[r, gallery_index]``, i.e. a uniform random choice (ties between the random high bits,
of probability below ``2**-40``, go to the lower gallery index). torchreid uses the global
``np.random`` state instead, so individual draws differ but the expectation is the same.

Speed and memory: queries are processed in blocks of at most ``query_block`` rows -- smaller
when the gallery is large, about ``2**19`` distances per block in market mode (cache-friendly)
and ``2**21`` query x repeat x gallery draws in cuhk03 mode -- by up to 4 threads, vectorised over
the queries of a block; the temporary memory is a few 8-byte words per distance of a block, per
thread. Market-1501 (3,368 x 15,913) takes about half a second on two cores with a ``float32``
distance matrix (see ``benchmarks/bench_metrics.py``). ``float32`` (what
:func:`~attnreid.utils.distance.compute_distance` returns), ``float16`` and small integers
take the fast path; a matrix whose values are not all ``float32`` values (e.g. a genuine
``float64`` one) takes a slower, equally exact path (numpy ``argsort`` plus repair of ties).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attnreid.data.base import EVAL_MODES
from attnreid.errors import ConfigError, DatasetError
from attnreid.evaluation import _rank_kernels as rk
from attnreid.utils.checks import one_of, positive_int

__all__ = ["EVAL_MODES", "RankResult", "evaluate_rank", "rank_blocks"]

_MAX_WORKERS = 4
_CUHK03_CHUNK_ELEMS = 1 << 21  # queries x repeats x gallery per cuhk03 chunk
_MARKET_CHUNK_ELEMS = 1 << 19  # queries x gallery per market chunk (cache-friendly)
_REPORTED_RANKS = (1, 5, 10, 20)
#: Identities or cameras of the queries or of the gallery items.
Ids = np.ndarray | torch.Tensor | Sequence[int]


@dataclass
class RankResult:
    """Result of :func:`evaluate_rank`.

    Attributes:
        cmc: ``(max_rank,)`` float array, ``cmc[k-1]`` = rank-k accuracy in ``[0, 1]``.
        mAP: mean average precision over the scored queries, in ``[0, 1]``.
        mINP: mean inverse negative penalty over the scored queries, in ``[0, 1]``.
        num_valid_queries: queries that were scored (had at least one true match).
        num_skipped_queries: queries without any true match left after junk removal.
        verification: the same-person-or-not view of the same distances (thresholds and true
            match rates at false match rates, :mod:`attnreid.evaluation.verification`), when
            the scorer was asked for it.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int
    num_skipped_queries: int
    verification: Any = None

    @property
    def max_rank(self) -> int:
        """Length of the CMC curve."""
        return int(self.cmc.shape[0])

    def rank(self, k: int) -> float:
        """Rank-``k`` accuracy (``k`` is 1-based: ``rank(1)`` is the rank-1 accuracy)."""
        if (
            isinstance(k, bool)
            or not isinstance(k, (int, np.integer))
            or not (1 <= k <= self.max_rank)
        ):
            raise ConfigError(f"rank k must be an integer in [1, {self.max_rank}], got {k!r}")
        return float(self.cmc[k - 1])

    def as_dict(self) -> dict[str, float | int]:
        """Scalars for logging and tables.

        Keys: ``rank1``, ``rank5``, ``rank10``, ``rank20`` (always present; NaN when ``k`` is
        beyond the CMC curve, i.e. ``k > max_rank``), ``mAP``, ``mINP``, ``num_valid_queries``,
        ``num_skipped_queries``, and with a verification view ``tpr@fpr=F`` for each false match
        rate ``F``. Accuracies are fractions in ``[0, 1]``.
        """
        out: dict[str, float | int] = {
            f"rank{k}": self.rank(k) if k <= self.max_rank else float("nan")
            for k in _REPORTED_RANKS
        }
        out["mAP"] = float(self.mAP)
        out["mINP"] = float(self.mINP)
        out["num_valid_queries"] = int(self.num_valid_queries)
        out["num_skipped_queries"] = int(self.num_skipped_queries)
        if self.verification is not None:
            out.update(self.verification.rates())
        return out


# --------------------------------------------------------------------------- input checks


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def _as_distmat(distmat: Any) -> np.ndarray:
    d = _to_numpy(distmat)
    if d.ndim != 2:
        raise ConfigError(
            f"distmat must be a 2-D (num_query, num_gallery) matrix, got shape {d.shape}"
        )
    real = np.issubdtype(d.dtype, np.integer) or np.issubdtype(d.dtype, np.floating)
    if not real and d.dtype != np.bool_:
        raise ConfigError(f"distmat must hold real numbers, got dtype {d.dtype}")
    return d


def _as_ids(x: Any, name: str) -> np.ndarray:
    a = _to_numpy(x)
    if a.ndim != 1:
        raise ConfigError(f"{name} must be a 1-D array, got shape {a.shape}")
    return a


def _check_no_nan(block: np.ndarray, first_row: int) -> None:
    if np.issubdtype(block.dtype, np.floating):
        bad = np.isnan(block).any(axis=1)
        if bad.any():
            row = first_row + int(np.flatnonzero(bad)[0])
            raise ConfigError(f"distmat contains NaN (first in query row {row})")


# --------------------------------------------------------------------------- identity groups


class _Groups:
    """Gallery items grouped by identity, and each query's group."""

    def __init__(self, q_pids: np.ndarray, g_pids: np.ndarray) -> None:
        uniq, g_code = np.unique(g_pids, return_inverse=True)
        g_code = g_code.reshape(-1)
        self.perm = np.argsort(g_code, kind="stable")  # gallery indices, grouped by identity
        self.counts = np.bincount(g_code, minlength=uniq.size)
        self.starts = np.cumsum(self.counts) - self.counts
        self.g_code = g_code
        code = np.minimum(np.searchsorted(uniq, q_pids), uniq.size - 1)
        present = uniq[code] == q_pids
        self.q_code = np.where(present, code, -1)
        self.q_count = np.where(present, self.counts[code], 0)
        self.q_start = np.where(present, self.starts[code], 0)

    def pairs(self, q0: int, q1: int) -> tuple[np.ndarray, np.ndarray]:
        """(row within block, gallery index) of every gallery item sharing the query's id."""
        cnt = self.q_count[q0:q1]
        rows = np.repeat(np.arange(q1 - q0), cnt)
        offset = np.arange(rows.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        gidx = self.perm[np.repeat(self.q_start[q0:q1], cnt) + offset]
        return rows, gidx


# --------------------------------------------------------------------------- protocols


def _num_workers(num_blocks: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_WORKERS, num_blocks))


def _map_blocks(fn: Any, bounds: Sequence[tuple[int, int]]) -> list[Any]:
    workers = _num_workers(len(bounds))
    if workers == 1:
        return [fn(b) for b in bounds]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, bounds))


def _market_block(
    rows_d: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray, groups: _Groups, q0: int
) -> tuple[np.ndarray, ...]:
    """Stats of queries ``q0:q0 + len(rows_d)``, whose distances are ``rows_d``."""
    block = np.ascontiguousarray(rows_d)
    _check_no_nan(block, q0)
    num_rows, num_g = block.shape
    q1 = q0 + num_rows
    rows, gidx = groups.pairs(q0, q1)
    junk = g_camids[gidx] == q_camids[q0 + rows]
    if num_rows <= rk.max_packed_rows(num_g):
        b32, lossless = rk.to_float32(block)
        keys = rk.packed_sorted_keys(b32)
        repair = None if lossless else rk.tie_repair(keys, block)
        pos = rk.packed_positions(keys, b32, rows, gidx, repair)
    else:  # more than 2**31 gallery items: plain stable sort
        pos = rk.inverse_positions(np.argsort(block, axis=1, kind="stable"))[rows, gidx]
    return rk.query_stats(rows, pos, junk, num_rows, num_g)


def _cuhk03_block(
    rows_d: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    groups: _Groups,
    keys: np.ndarray,
    max_rank: int,
    q0: int,
) -> tuple[np.ndarray, ...]:
    """Stats of queries ``q0:q0 + len(rows_d)`` plus the histogram of their sampled
    first-match ranks."""
    block = np.ascontiguousarray(rows_d)
    _check_no_nan(block, q0)
    num_rows, num_g = block.shape
    q1 = q0 + num_rows
    pos = rk.inverse_positions(rk.stable_argsort(block))  # (B, G) rank of every gallery item
    rows, gidx = groups.pairs(q0, q1)
    junk = g_camids[gidx] == q_camids[q0 + rows]
    num_matches, first_rank, ap, inp = rk.query_stats(rows, pos[rows, gidx], junk, num_rows, num_g)

    # Everything below is in "identity order": gallery permuted so that identities are contiguous.
    perm = groups.perm
    junk_p = (g_pids[perm][None, :] == q_pids[q0:q1, None]) & (
        g_camids[perm][None, :] == q_camids[q0:q1, None]
    )  # (B, G)
    keys_p = keys[:, :, perm]  # (B, R, G)
    np.putmask(keys_p, np.broadcast_to(junk_p[:, None, :], keys_p.shape), np.uint64(2**64 - 1))
    mins = np.minimum.reduceat(keys_p, groups.starts, axis=2)  # (B, R, num_ids)
    sampled = keys_p == np.repeat(mins, groups.counts, axis=2)
    sampled &= ~junk_p[:, None, :]  # one kept image per identity, per repeat
    pos_p = pos[:, perm][:, None, :]  # (B, 1, G)
    own = (groups.g_code[perm][None, :] == groups.q_code[q0:q1, None])[:, None, :]
    match_pos = np.where(sampled & own, pos_p, num_g).min(axis=2)  # (B, R)
    sampled_rank = np.count_nonzero(sampled & (pos_p < match_pos[:, :, None]), axis=2) + 1
    valid = num_matches > 0
    hist = np.bincount(
        np.minimum(sampled_rank[valid].reshape(-1), max_rank + 1), minlength=max_rank + 2
    )
    return num_matches, first_rank, ap, inp, hist


def evaluate_rank(
    distmat: np.ndarray | torch.Tensor,
    q_pids: Ids,
    g_pids: Ids,
    q_camids: Ids,
    g_camids: Ids,
    max_rank: int = 50,
    mode: str = "market",
    query_block: int = 512,
    num_repeats: int = 10,
    seed: int = 0,
) -> RankResult:
    """CMC, mAP and mINP of a query-gallery distance matrix (protocol: see the module docs):
    :func:`rank_blocks` of the matrix as one block.

    Args:
        distmat: ``(Q, G)`` distances, smaller = more similar (numpy array or tensor; any real
            dtype; ``float32`` is the fast path). Must not contain NaN; ``inf`` is allowed.
        q_pids, g_pids: identity of every query / gallery image (1-D, length ``Q`` / ``G``).
        q_camids, g_camids: camera of every query / gallery image.
        max_rank: length of the CMC curve; lowered to ``G`` if the gallery is smaller.
        mode: ``"market"`` (torchreid ``eval_market1501`` / fast-reid ``evaluate_rank``) or
            ``"cuhk03"`` (torchreid ``eval_cuhk03``, single-gallery-shot).
        query_block: upper bound on the queries processed at once (smaller blocks are used for
            large galleries); bounds memory, does not change the result.
        num_repeats: ``cuhk03`` only: number of random gallery samplings averaged.
        seed: ``cuhk03`` only: seed of ``numpy.random.default_rng`` for the sampling.

    Returns:
        A :class:`RankResult`.

    Raises:
        ConfigError: unknown ``mode``; non-positive ``max_rank`` / ``query_block`` /
            ``num_repeats``; arrays of the wrong dimension or length; NaN distances.
        DatasetError: an empty query set or gallery, or no query with a true match.
    """
    d = _as_distmat(distmat)
    num_q, num_g = d.shape
    for name, arr, n, side in (
        ("q_pids", q_pids, num_q, "rows (queries)"),
        ("q_camids", q_camids, num_q, "rows (queries)"),
        ("g_pids", g_pids, num_g, "columns (gallery items)"),
        ("g_camids", g_camids, num_g, "columns (gallery items)"),
    ):
        if (got := _as_ids(arr, name).shape[0]) != n:
            raise ConfigError(f"distmat has {n} {side} but {name} has {got} entries")
    if num_q == 0:
        raise DatasetError("the query set is empty: distmat has 0 rows")
    if num_g == 0:
        raise DatasetError("the gallery is empty: distmat has 0 columns")
    return rank_blocks(
        [(0, d)], q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, mode=mode,
        query_block=query_block, num_repeats=num_repeats, seed=seed,
    )  # fmt: skip


def rank_blocks(
    blocks: Iterable[tuple[int, Any]], q_pids: Ids, g_pids: Ids, q_camids: Ids, g_camids: Ids,
    *, max_rank: int = 50, mode: str = "market", query_block: int = 512, num_repeats: int = 10,
    seed: int = 0,
) -> RankResult:  # fmt: skip
    """CMC, mAP and mINP from the distance matrix given as consecutive query blocks
    ``(first_query, (rows, G) distances)``, in query order: the one ranking function
    (:func:`evaluate_rank` is its one-block case; :class:`~attnreid.evaluation.scoring.Scorer`
    streams blocks computed from features into it). Only one block is held at a time, and the
    result does not depend on the blocks (the per-query statistics, the sub-blocks and the order
    of the CUHK03 draws are the same). Arguments and errors as :func:`evaluate_rank`."""
    one_of(mode, EVAL_MODES, "evaluation mode")
    max_rank = positive_int(max_rank, "max_rank")
    query_block = positive_int(query_block, "query_block")
    num_repeats = positive_int(num_repeats, "num_repeats")
    qp, gp = _as_ids(q_pids, "q_pids"), _as_ids(g_pids, "g_pids")
    qc, gc = _as_ids(q_camids, "q_camids"), _as_ids(g_camids, "g_camids")
    num_q, num_g = qp.shape[0], gp.shape[0]
    if qc.shape[0] != num_q or gc.shape[0] != num_g:
        raise ConfigError(
            f"{num_q} q_pids and {qc.shape[0]} q_camids, {num_g} g_pids and {gc.shape[0]} "
            "g_camids: the lengths must agree"
        )
    if num_q == 0:
        raise DatasetError("the query set is empty")
    if num_g == 0:
        raise DatasetError("the gallery is empty")
    max_rank = min(max_rank, num_g)
    groups = _Groups(qp, gp)
    packed_rows = rk.max_packed_rows(num_g)
    chunk = min(query_block, packed_rows) if packed_rows > 0 else query_block
    if mode == "market":
        chunk = max(1, min(chunk, _MARKET_CHUNK_ELEMS // num_g))
    else:
        chunk = max(1, min(chunk, _CUHK03_CHUNK_ELEMS // (num_repeats * num_g)))
        rng = np.random.default_rng(seed)
        low = np.uint64((1 << rk.index_bits(num_g)) - 1)
        gidx = np.arange(num_g, dtype=np.uint64)

    parts: list[tuple[np.ndarray, ...]] = []
    done = 0
    for start, block in blocks:
        d = _as_distmat(block)
        if start != done or d.shape[1] != num_g or done + d.shape[0] > num_q:
            raise ConfigError(
                f"distance block of shape {d.shape} at query {start} does not continue the "
                f"{done} queries scored so far of a {num_q} x {num_g} evaluation"
            )
        bounds = [(s, min(s + chunk, d.shape[0])) for s in range(0, d.shape[0], chunk)]
        if mode == "market":
            parts += _map_blocks(
                lambda b, d=d, q0=start: _market_block(d[b[0] : b[1]], qc, gc, groups, q0 + b[0]),
                bounds,
            )
        else:
            for s, e in bounds:
                keys = rng.integers(0, 2**64, size=(e - s, num_repeats, num_g), dtype=np.uint64)
                keys &= ~low
                keys |= gidx
                parts.append(
                    _cuhk03_block(d[s:e], qp, qc, gp, gc, groups, keys, max_rank, start + s)
                )
        done += d.shape[0]
    if done != num_q:
        raise ConfigError(f"distance blocks covered {done} of {num_q} queries")
    return _aggregate(parts, mode, num_q, max_rank, num_repeats)


def _aggregate(
    parts: list[tuple[np.ndarray, ...]], mode: str, num_q: int, max_rank: int, num_repeats: int
) -> RankResult:
    """Per-query statistics of the blocks (``num_matches, first_rank, AP, INP`` and, for
    ``cuhk03``, the rank histogram) -> :class:`RankResult`."""
    num_matches, first_rank, ap, inp = (np.concatenate([p[i] for p in parts]) for i in range(4))
    valid = num_matches > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise DatasetError(
            f"no query has a true match in the gallery (all {num_q} queries skipped): no gallery "
            "image shares a query's identity from another camera; check the ids and camera ids"
        )
    if mode == "market":
        hist = np.bincount(np.minimum(first_rank[valid], max_rank + 1), minlength=max_rank + 2)
        denom = num_valid
    else:
        hist = np.sum([p[4] for p in parts], axis=0)
        denom = num_valid * num_repeats
    cmc = np.cumsum(hist[1 : max_rank + 1]) / denom
    return RankResult(
        cmc=cmc.astype(np.float64),
        mAP=float(ap[valid].mean()),
        mINP=float(inp[valid].mean()),
        num_valid_queries=num_valid,
        num_skipped_queries=num_q - num_valid,
    )
