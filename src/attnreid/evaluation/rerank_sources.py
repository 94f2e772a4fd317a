"""Distance sources for :mod:`attnreid.evaluation.rerank`: rows of the ``(N, N)`` distance
matrix of ``N = Q + G`` items (queries first), produced block by block.

* :class:`MatrixDistances` reads given ``q_g``, ``q_q`` and ``g_g`` matrices. Row ``p`` is
  column ``p`` of ``[[q_q, q_g], [q_g.T, g_g]]``, as in the authors' code (which transposes);
  for a symmetric matrix it is the same. Columns are copied tile by tile (cache-friendly).
* :class:`FeatureDistances` computes distances from features with
  :func:`~attnreid.utils.distance.compute_distance` (``"euclidean"``: squared, or
  ``"cosine"``), or with a model's own distance function (e.g. DuATM's, which the
  :class:`~attnreid.evaluation.scoring.Scorer` hands over), a block at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from attnreid.errors import ConfigError
from attnreid.utils.checks import one_of
from attnreid.utils.distance import DISTANCE_METRICS, compute_distance

__all__ = ["DistanceSource", "FeatureDistances", "MatrixDistances"]

_BLOCK_ELEMS = 1 << 22  # distances per row block of the default pairs() (16 MB of float32)


class DistanceSource:
    """Rows of the ``(N, N)`` distance matrix of ``N = Q + G`` items, queries first."""

    num_query: int
    num_items: int

    def rows(self, start: int, stop: int) -> np.ndarray:
        """``(stop - start, N)`` float32 distances of items ``start:stop`` to every item."""
        raise NotImplementedError

    def query_gallery(self, start: int, stop: int) -> np.ndarray:
        """``(stop - start, G)`` float32 distances of queries ``start:stop`` to the gallery
        (a new array the caller may modify)."""
        return np.array(self.rows(start, stop)[:, self.num_query :])

    def pairs(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``d(rows[k], cols[k])`` as float32; default: computed from blocks of :meth:`rows`."""
        out = np.empty(rows.shape, dtype=np.float32)
        if rows.size == 0:
            return out
        step = max(1, _BLOCK_ELEMS // self.num_items)
        order = np.argsort(rows, kind="stable")
        srows = rows[order]
        for start in range(int(srows[0]) // step * step, int(srows[-1]) + 1, step):
            lo, hi = np.searchsorted(srows, [start, start + step])
            if lo == hi:
                continue
            block = self.rows(start, min(start + step, self.num_items))
            sel = order[lo:hi]
            out[sel] = block[rows[sel] - start, cols[sel]]
        return out


class MatrixDistances(DistanceSource):
    """The distances of given query-gallery, query-query and gallery-gallery matrices.

    Row ``p`` is column ``p`` of ``[[q_q, q_g], [q_g.T, g_g]]`` (the authors' convention).
    """

    def __init__(self, q_g: Any, q_q: Any, g_g: Any) -> None:
        self.q_g, self.q_q, self.g_g = (
            _as_matrix(m, n) for m, n in ((q_g, "q_g"), (q_q, "q_q"), (g_g, "g_g"))
        )
        self.num_query, num_g = self.q_g.shape
        self.num_items = self.num_query + num_g
        if self.q_q.shape != (self.num_query, self.num_query) or self.g_g.shape != (num_g, num_g):
            raise ConfigError(
                f"re-ranking needs q_q_dist ({self.num_query}, {self.num_query}) and g_g_dist "
                f"({num_g}, {num_g}) for q_g_dist {self.q_g.shape}; got {self.q_q.shape} and "
                f"{self.g_g.shape}"
            )

    def rows(self, start: int, stop: int) -> np.ndarray:
        q = self.num_query
        out = np.empty((stop - start, self.num_items), dtype=np.float32)
        if start < q:  # query items: columns of q_q, then rows of q_g
            e = min(stop, q)
            _transpose_into(out[: e - start, :q], self.q_q[:, start:e])
            out[: e - start, q:] = self.q_g[start:e]
        if stop > q:  # gallery items: columns of q_g and of g_g
            s = max(start, q)
            _transpose_into(out[s - start :, :q], self.q_g[:, s - q : stop - q])
            _transpose_into(out[s - start :, q:], self.g_g[:, s - q : stop - q])
        return out

    def query_gallery(self, start: int, stop: int) -> np.ndarray:
        return np.array(self.q_g[start:stop], dtype=np.float32)

    def pairs(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        # element [cols, rows] of the full matrix (column ``row``)
        q = self.num_query
        out = np.empty(rows.shape, dtype=np.float32)
        rq, cq = rows < q, cols < q
        for rsel, csel, get in (
            (True, True, lambda r, c: self.q_q[c, r]),
            (True, False, lambda r, c: self.q_g[r, c - q]),
            (False, True, lambda r, c: self.q_g[c, r - q]),
            (False, False, lambda r, c: self.g_g[c - q, r - q]),
        ):
            m = (rq == rsel) & (cq == csel)
            out[m] = get(rows[m], cols[m])
        return out


class FeatureDistances(DistanceSource):
    """Distances computed from query and gallery features, block by block.

    ``metric``: ``"euclidean"`` (squared, as :func:`~attnreid.utils.distance.
    compute_distance`) or ``"cosine"``; ``own``: a distance function ``(rows, items) -> (R, N)``
    used instead (a model's own, e.g. DuATM's ``compute_distance``), through the same blocks.
    """

    def __init__(
        self,
        query: torch.Tensor | np.ndarray,
        gallery: torch.Tensor | np.ndarray,
        metric: str = "euclidean",
        own: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        one_of(metric, DISTANCE_METRICS, "metric")
        q, g = (
            torch.from_numpy(np.array(x)) if isinstance(x, np.ndarray) else x
            for x in (query, gallery)
        )
        self.features = torch.cat([q, g]).float()
        self.num_query, self.num_items = int(q.shape[0]), int(self.features.shape[0])
        self.metric, self._own = metric, own
        if own is None and self.features.dim() != 2:
            raise ConfigError(
                f"features must be 2-D (N, D), got shape {tuple(self.features.shape)}"
            )
        if own is None and metric == "cosine":
            self.features = F.normalize(self.features, dim=1)

    def _distances(self, block: torch.Tensor, items: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            if self._own is not None:
                d = self._own(block, items)
            else:
                d = compute_distance(block, items, metric=self.metric)
        return d.detach().float().cpu().numpy()

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self._distances(self.features[start:stop], self.features)

    def query_gallery(self, start: int, stop: int) -> np.ndarray:
        return self._distances(self.features[start:stop], self.features[self.num_query :])

    def pairs(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        if self._own is not None:
            return super().pairs(rows, cols)
        f = self.features
        out = np.empty(rows.shape, dtype=np.float32)
        step = max(1, (1 << 23) // max(1, f.shape[1]))
        sq = f.pow(2).sum(1) if self.metric == "euclidean" else None
        with torch.no_grad():
            for s in range(0, rows.size, step):
                r = torch.from_numpy(rows[s : s + step].astype(np.int64))
                c = torch.from_numpy(cols[s : s + step].astype(np.int64))
                dot = (f[r] * f[c]).sum(1)
                d = 1.0 - dot if sq is None else (sq[r] + sq[c] - 2.0 * dot).clamp_(min=0)
                out[s : s + step] = d.numpy()
        return out


def _transpose_into(out: np.ndarray, columns: np.ndarray) -> None:
    """``out[...] = columns.T``, tile by tile (a plain transposed copy is cache-hostile)."""
    for r in range(0, columns.shape[0], 1024):
        out[:, r : r + 1024] = columns[r : r + 1024].T


def _as_matrix(m: Any, name: str) -> np.ndarray:
    a = m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
    if a.ndim != 2:
        raise ConfigError(f"{name}_dist must be a 2-D matrix, got shape {a.shape}")
    return a
