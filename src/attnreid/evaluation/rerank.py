"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), fast and memory-lean.

Zhong, Zheng, Cao, Li, "Re-ranking Person Re-identification with k-reciprocal Encoding". With
``N = Q + G`` query and gallery images, ``d(p, q)`` the original distance and ``N(p, k)`` the
``k`` nearest neighbours of ``p`` among all ``N`` images (``p`` itself included):

* ``R(p, k) = {q in N(p, k) : p in N(q, k)}`` -- the k-reciprocal neighbours (eq. 3);
* ``R*(p, k1) = R(p, k1) U R(q, k1/2)`` for every ``q in R(p, k1)`` whose
  ``|R(q, k1/2) & R(p, k1)| > 2/3 |R(q, k1/2)|`` (eq. 4);
* ``V[p, q] = exp(-d(p, q)) / sum_{q' in R*(p)} exp(-d(p, q'))`` on ``R*(p)``, 0 elsewhere
  (eq. 8); local query expansion replaces ``V[p]`` by the mean of ``V`` over ``N(p, k2)``
  (eq. 11);
* ``d_J(p, g) = 1 - sum_j min(V[p, j], V[g, j]) / sum_j max(V[p, j], V[g, j])`` (eq. 10; rows of
  ``V`` sum to 1, so the denominator is ``2 - numerator``);
* ``d*(p, g) = (1 - lambda) d_J(p, g) + lambda d(p, g)`` (eq. 12); ``k1 = 20, k2 = 6,
  lambda = 0.3`` as in the paper.

The result equals the authors' public function ``re_ranking(q_g_dist, q_q_dist, g_g_dist)``
(kept literally as the test oracle, ``tests/evaluation/rerank_reference.py``) to float rounding,
with these choices where the paper leaves the details to that code:

* **d** is the given distance **squared**, then divided by its largest value in the row of ``p``
  (the authors' code; ``square=False`` keeps the distance as given). From distance matrices,
  "the row of ``p``" is column ``p`` of the full ``N x N`` matrix, as in the authors' code (they
  transpose); for a symmetric matrix the two are the same.
* ``k1/2`` is ``round(k1 / 2)`` with numpy's rounding (``k1 = 20 -> 10``); the comparison
  ``> 2/3 |R|`` is done in float64 like theirs.
* **Ties** in distance are broken by index (a stable order); the authors' ``np.argsort`` leaves
  the order of ties unspecified.

How it is fast and lean: nothing ``N x N`` is ever held. The distances are produced in blocks
of rows (from features or from the given matrices: :mod:`attnreid.evaluation.rerank_sources`);
each block gives its rows' ``max(k1+1, k2)`` nearest neighbours (a stable ``torch.topk``) and
its row maximum, and is dropped. Reciprocity and the ``R*`` expansion are vectorised over rows
on the ``(N, k1+1)`` neighbour table; ``V`` is a sparse (CSR) matrix, the query expansion a
sparse product, and the Jaccard numerator of a block of queries a scatter-add over the pairs
(query, gallery item) that share a non-zero column of ``V``. Memory: the neighbour table, ``V``
(about ``N * |R*| * k2`` non-zeros) and one block; time: the distance blocks plus a few
vectorised passes. Every float32 operation of the authors' code is done in the same order, so
the results agree bit for bit in our runs (the tests require 1e-5 and an identical mAP). The
final ``(Q, G)`` distances come in query blocks from :func:`iter_rerank`, so evaluation never
needs the whole matrix.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from attnreid.errors import ConfigError
from attnreid.evaluation.rerank_sources import DistanceSource, FeatureDistances, MatrixDistances
from attnreid.utils.checks import positive_int

__all__ = [
    "DistanceSource",
    "FeatureDistances",
    "MatrixDistances",
    "iter_rerank",
    "re_ranking",
]

_BLOCK_ELEMS = 1 << 22  # distances per row block (16 MB of float32)
_PAIR_BUDGET = 1 << 20  # (query, gallery) pairs per Jaccard block


# --------------------------------------------------------------------------- the algorithm


def _check_params(k1: int, k2: int, lambda_value: float) -> None:
    for name, v in (("k1", k1), ("k2", k2)):
        positive_int(v.item() if isinstance(v, np.integer) else v, f"re-ranking {name}")
    if not (0.0 <= float(lambda_value) <= 1.0):
        raise ConfigError(f"re-ranking lambda must be in [0, 1], got {lambda_value!r}")


def _stable_topk(od: np.ndarray, k: int) -> np.ndarray:
    """Row-wise indices of the ``k`` smallest values, ordered by (value, index).

    ``torch.topk`` picks ``k + 1``; a tie at the boundary (the ``k+1``-th value equal to the
    ``k``-th, the only case where topk's choice among equal values matters) sends that row to a
    stable argsort.
    """
    t = torch.from_numpy(od)
    extra = int(k < od.shape[1])
    vals, idx = torch.topk(t, k + extra, dim=1, largest=False, sorted=True)
    crowded = np.flatnonzero((vals[:, k] == vals[:, k - 1]).numpy()) if extra else []
    idx = idx[:, :k].sort(dim=1).values
    order = torch.sort(t.gather(1, idx), dim=1, stable=True).indices
    idx = idx.gather(1, order).numpy().astype(np.int32)
    for r in crowded:
        idx[r] = np.argsort(od[r], kind="stable")[:k]
    return idx


def _normalised(
    d: np.ndarray, square: bool, m: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """In place: ``d**2`` (``square``) divided by its row maximum, or by the given maxima
    ``m``; returns ``(d, maximum)``."""
    if square:
        np.multiply(d, d, out=d)
    if m is None:
        m = d.max(axis=1)  # NaN propagates
        if np.isnan(m).any():
            raise ConfigError("re-ranking: the distances contain NaN")
    np.divide(d, np.where(m > 0, m, np.float32(1))[:, None], out=d)
    return d, m


def _neighbours(src: DistanceSource, k: int, square: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(ranks (N, k) int32, row maximum of the squared distances (N,) float32)``."""
    n = src.num_items
    ranks = np.empty((n, k), dtype=np.int32)
    rowmax = np.empty(n, dtype=np.float32)
    step = max(1, _BLOCK_ELEMS // n)
    for s in range(0, n, step):
        e = min(s + step, n)
        od, rowmax[s:e] = _normalised(src.rows(s, e), square)
        ranks[s:e] = _stable_topk(od, k)
    return ranks, rowmax


def _reciprocal(table: np.ndarray) -> np.ndarray:
    """``mask[p, m]``: ``p`` is among the neighbours (row) of its ``m``-th neighbour."""
    n, k = table.shape
    out = np.empty((n, k), dtype=bool)
    step = max(1, _BLOCK_ELEMS // (k * k))
    for s in range(0, n, step):
        e = min(s + step, n)
        ids = np.arange(s, e, dtype=np.int32)[:, None, None]
        out[s:e] = (table[table[s:e]] == ids).any(axis=2)
    return out


def _expanded_sets(ranks: np.ndarray, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``(indptr, indices)`` of ``R*(p, k1)`` for every ``p`` (indices sorted per row)."""
    n = ranks.shape[0]
    r1 = ranks[:, : min(k1 + 1, ranks.shape[1])]
    rh = ranks[:, : min(int(np.around(k1 / 2.0)) + 1, ranks.shape[1])]
    m1, mh = _reciprocal(r1), _reciprocal(rh)
    k, kh = r1.shape[1], rh.shape[1]
    counts = np.empty(n, dtype=np.int64)
    chunks = []
    step = max(1, _BLOCK_ELEMS // (k * kh * k))
    for s in range(0, n, step):
        e = min(s + step, n)
        ri, mi = r1[s:e], m1[s:e]  # (b, k) and whether each is k-reciprocal
        hc, mc = rh[ri], mh[ri]  # (b, k, kh): R(c, k1/2) of each candidate c
        in_r = ((hc[..., None] == ri[:, None, None, :]) & mi[:, None, None, :]).any(axis=3)
        inter = (in_r & mc).sum(axis=2)
        accept = mi & (inter > 2.0 / 3 * mc.sum(axis=2))
        members = np.concatenate(
            [np.where(mi, ri, -1), np.where(accept[..., None] & mc, hc, -1).reshape(e - s, -1)],
            axis=1,
        )
        members.sort(axis=1)
        keep = members >= 0
        keep[:, 1:] &= members[:, 1:] != members[:, :-1]
        counts[s:e] = keep.sum(axis=1)
        chunks.append(members[keep])
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, np.concatenate(chunks).astype(np.int32)


def _segment_sums(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Per-row ``np.sum`` of a CSR row set, bit-identical to summing each row on its own
    (numpy's pairwise float32 summation): rows of equal length are summed as one matrix."""
    lengths = np.diff(indptr)
    out = np.zeros(lengths.size, dtype=values.dtype)
    for length in np.unique(lengths[lengths > 0]):
        rows = np.flatnonzero(lengths == length)
        out[rows] = values[indptr[rows][:, None] + np.arange(length)].sum(axis=1)
    return out


def _weights(
    src: DistanceSource, indptr: np.ndarray, indices: np.ndarray, rowmax: np.ndarray, square: bool
) -> sp.csr_matrix:
    """``V`` (eq. 8) as a CSR matrix, float32 (the authors' float32 operations, in order)."""
    n = src.num_items
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    d = src.pairs(rows, indices.astype(np.int64))
    if square:
        d = np.power(d, 2)
    m = rowmax[rows]
    w = np.exp(-(d / np.where(m > 0, m, np.float32(1))))
    data = w / _segment_sums(w, indptr)[rows]
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


def _query_expansion(v: sp.csr_matrix, ranks: np.ndarray, k2: int) -> sp.csr_matrix:
    """Mean of the rows of ``V`` of each item's ``k2`` nearest neighbours (eq. 11).

    A sparse product with a 0/1 matrix whose row entries are in rank order: each sum is
    accumulated in float32 in that order, like the authors' ``np.mean(V[rank[:k2]], axis=0)``.
    """
    n = v.shape[0]
    k2 = min(k2, ranks.shape[1])
    if k2 == 1:
        return v
    cols = ranks[:, :k2].reshape(-1)
    a = sp.csr_matrix(
        (np.ones(cols.size, dtype=np.float32), cols, np.arange(0, n * k2 + 1, k2)), shape=(n, n)
    )
    out = (a @ v).tocsr()
    out.sort_indices()
    out.data /= np.float32(k2)
    return out


def _jaccard_blocks(v: sp.csr_matrix, num_query: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, d_J)`` of query blocks against the gallery (eq. 10), float32.

    The numerator of each (query, gallery item) pair is accumulated in float32 over the shared
    columns in increasing order (``np.add.at`` is sequential), as the authors' loop does.
    """
    vg = v[num_query:].tocsc()
    num_g = vg.shape[0]
    col_ptr, col_rows, col_vals = vg.indptr, vg.indices, vg.data
    vq = v[:num_query].tocsr()
    col_counts = np.diff(col_ptr)
    entry_rows = np.repeat(np.arange(num_query), np.diff(vq.indptr))
    per_query = np.bincount(entry_rows, weights=col_counts[vq.indices], minlength=num_query)
    start = 0
    while start < num_query:
        budget = np.cumsum(per_query[start:]) <= _PAIR_BUDGET
        stop = start + max(1, min(int(budget.sum()), max(1, _BLOCK_ELEMS // max(1, num_g))))
        lo, hi = vq.indptr[start], vq.indptr[stop]
        cols, vals = vq.indices[lo:hi], vq.data[lo:hi]
        rows = entry_rows[lo:hi] - start
        cnt = col_counts[cols]
        total = int(cnt.sum())
        first = np.repeat(col_ptr[cols] - (np.cumsum(cnt) - cnt), cnt)
        pos = first + np.arange(total)
        w = np.minimum(np.repeat(vals, cnt), col_vals[pos])
        key = np.repeat(rows.astype(np.int64), cnt) * num_g + col_rows[pos]
        t = np.zeros((stop - start) * num_g, dtype=np.float32)
        np.add.at(t, key, w)
        t = t.reshape(stop - start, num_g)
        yield start, stop, 1 - t / (2.0 - t)
        start = stop


def iter_rerank(
    src: DistanceSource,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    square: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_query, block)``: re-ranked ``d*`` of consecutive query blocks vs the
    gallery, ``(rows, G)`` float32, in query order."""
    _check_params(k1, k2, lambda_value)
    n, q = src.num_items, src.num_query
    if q == 0 or n == q:
        return
    ranks, rowmax = _neighbours(src, min(max(k1 + 1, k2), n), square)
    indptr, indices = _expanded_sets(ranks, k1)
    v = _weights(src, indptr, indices, rowmax, square)
    v = _query_expansion(v, ranks, k2)
    del ranks, indptr, indices
    for start, stop, jac in _jaccard_blocks(v, q):
        d, _ = _normalised(src.query_gallery(start, stop), square, rowmax[start:stop])
        yield start, jac * (1 - lambda_value) + d * lambda_value


def collect(src: DistanceSource, blocks: Iterator[tuple[int, np.ndarray]]) -> np.ndarray:
    out = np.empty((src.num_query, src.num_items - src.num_query), dtype=np.float32)
    for start, block in blocks:
        out[start : start + block.shape[0]] = block
    return out


def re_ranking(
    q_g_dist: np.ndarray | torch.Tensor,
    q_q_dist: np.ndarray | torch.Tensor,
    g_g_dist: np.ndarray | torch.Tensor,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    square: bool = True,
) -> np.ndarray:
    """Re-ranked ``(Q, G)`` float32 distances from the three distance matrices.

    Same inputs and result as the authors' ``re_ranking`` (see the module docs), without its
    ``N x N`` float matrices: the inputs are read block by block.
    """
    src = MatrixDistances(q_g_dist, q_q_dist, g_g_dist)
    return collect(src, iter_rerank(src, k1, k2, lambda_value, square=square))
