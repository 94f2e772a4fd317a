"""How query and gallery features are compared and ranked: one :class:`Scorer`.

A scorer is built once, from a model and a config's ``eval`` section
(:meth:`Scorer.from_config`), and owns the whole comparison:

* **the distance**, chosen once by the model's type: a model that declares ``own_distance``
  (DuATM's sequence matching, SA-ResNet's per-query normalised distance) ranks with its own
  ``compute_distance``; any other with ``eval.metric`` (squared euclidean or cosine,
  :func:`~attnreid.utils.distance.compute_distance`) on the features, L2-normalised first
  when ``eval.normalize``;
* **k-reciprocal re-ranking** (``eval.rerank``, :mod:`attnreid.evaluation.rerank`), on top of
  that distance;
* **the verification view** (``eval.fmrs``, :mod:`attnreid.evaluation.verification`): the
  same blocks, read as same-person-or-not trials, give the true match rate at each false
  match rate;
* **the ranking**: query blocks of distances (``block_elems`` of them at a time, 128 MB of
  float32) stream into :func:`~attnreid.evaluation.metrics.rank_blocks`, so the ``Q x G``
  matrix is never held (MSMT17: 11,659 x 82,161 = 3.8 GB) and the result is that of
  :func:`~attnreid.evaluation.metrics.evaluate_rank` on the whole matrix.

Evaluation (:func:`~attnreid.evaluation.evaluate.evaluate`, training-time evaluation),
``attnreid eval``, ``viz ranks``, ``viz cmc`` and the metric of a gallery index all go through
it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from attnreid.errors import ConfigError, DatasetError
from attnreid.evaluation.features import FeatureSet
from attnreid.evaluation.metrics import RankResult, rank_blocks
from attnreid.evaluation.rerank import FeatureDistances, collect, iter_rerank
from attnreid.evaluation.verification import VerificationStats
from attnreid.utils.checks import one_of, positive_int
from attnreid.utils.distance import DISTANCE_METRICS, compute_distance, owns_distance

__all__ = ["DEFAULT_BLOCK_ELEMS", "Scorer"]

#: Query x gallery distances computed and ranked at once (128 MB of float32).
DEFAULT_BLOCK_ELEMS = 1 << 25

#: The ``eval`` keys a scorer takes (its keyword arguments).
EVAL_KEYS = (
    "metric", "normalize", "max_rank", "rerank", "rerank_k1", "rerank_k2", "rerank_lambda", "fmrs"
)  # fmt: skip


class Scorer:
    """Distances and ranking of query vs gallery features (see the module docstring).

    ``model``: the model the features come from; its own distance is used when its type
    declares one (:func:`~attnreid.utils.distance.owns_distance`), and ``metric`` /
    ``normalize`` otherwise. The other arguments are the ``eval`` keys of the same names.
    """

    def __init__(
        self,
        model: Any = None,
        *,
        metric: str = "euclidean",
        normalize: bool = False,
        max_rank: int = 50,
        rerank: bool = False,
        rerank_k1: int = 20,
        rerank_k2: int = 6,
        rerank_lambda: float = 0.3,
        fmrs: Sequence[float] = (),
        block_elems: int = DEFAULT_BLOCK_ELEMS,
    ) -> None:
        #: The model whose own distance ranks, or None: the metric does.
        self.model = model if owns_distance(model) else None
        self.metric = one_of(metric, DISTANCE_METRICS, "metric")
        self.normalize, self.max_rank, self.rerank = bool(normalize), max_rank, bool(rerank)
        self.rerank_params = (rerank_k1, rerank_k2, rerank_lambda)
        self.fmrs = tuple(float(f) for f in fmrs)
        if any(not 0 < f < 1 for f in self.fmrs):
            raise ConfigError(f"eval.fmrs must be false match rates in (0, 1), got {fmrs!r}")
        self.block_elems = positive_int(block_elems, "block_elems")

    @classmethod
    def from_config(cls, model: Any, eval_cfg: dict[str, Any], **overrides: Any) -> Scorer:
        """The scorer of a config's ``eval`` section; ``overrides`` (not None) replace keys."""
        settings = {k: eval_cfg[k] for k in EVAL_KEYS}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(model, **settings)

    @property
    def index_metric(self) -> str:
        """The metric of a gallery index that ranks as this scorer's features do (without
        re-ranking): ``"cosine"`` when they are compared L2-normalised."""
        return "cosine" if self.metric == "cosine" or self.normalize else "euclidean"

    # ------------------------------------------------------------------ distances

    def _features(self, query: Any, gallery: Any) -> tuple[torch.Tensor, torch.Tensor]:
        qf, gf = (
            x.features if isinstance(x, FeatureSet) else torch.as_tensor(x)
            for x in (query, gallery)
        )
        if self.model is None and self.normalize:  # the metric's input; a model's own is not
            qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
        return qf, gf

    def _distance(self, query: torch.Tensor, gallery: torch.Tensor) -> np.ndarray:
        """``(q, G)`` distances of a block of queries."""
        with torch.no_grad():
            if self.model is not None:
                d = self.model.compute_distance(query, gallery)
            else:
                d = compute_distance(query, gallery, metric=self.metric)
        return d.detach().cpu().numpy()

    def distance_source(self, query: Any, gallery: Any) -> FeatureDistances:
        """The rows of the ``(Q + G)`` square distance matrix that re-ranking reads."""
        qf, gf = self._features(query, gallery)
        own = self.model.compute_distance if self.model is not None else None
        return FeatureDistances(qf, gf, self.metric, own)

    def blocks(self, query: Any, gallery: Any) -> Iterator[tuple[int, np.ndarray]]:
        """``(first_query, (rows, G) distances)`` of consecutive query blocks, re-ranked with
        ``rerank``. ``query`` / ``gallery``: feature sets, or their feature tensors."""
        if self.rerank:
            yield from iter_rerank(self.distance_source(query, gallery), *self.rerank_params)
            return
        qf, gf = self._features(query, gallery)
        num_q = int(qf.shape[0])
        most = max(1, self.block_elems // max(1, int(gf.shape[0])))  # rows of a block, at most
        # blocks of equal size: no short last block, whose rows a BLAS kernel for few rows
        # would round differently than the whole matrix's computation does
        rows = max(1, -(-num_q // max(1, -(-num_q // most))))
        for start in range(0, num_q, rows):
            yield start, self._distance(qf[start : start + rows], gf)

    def distances(self, query: Any, gallery: Any, rows: Sequence[int]) -> np.ndarray:
        """``(len(rows), G)`` distances of the chosen queries to the whole gallery (with
        ``rerank`` the neighbourhoods involve every query: all are re-ranked, these kept)."""
        if not self.rerank:
            qf, gf = self._features(query, gallery)
            return self._distance(qf[list(rows)], gf)
        picked = {}
        for start, block in self.blocks(query, gallery):
            picked.update({r: block[r - start] for r in rows if 0 <= r - start < len(block)})
        return np.stack([picked[r] for r in rows])

    # ------------------------------------------------------------------ ranking

    def score(self, query: FeatureSet, gallery: FeatureSet, mode: str = "market") -> RankResult:
        """CMC / mAP / mINP of ``query`` vs ``gallery`` under protocol ``mode``.

        Raises:
            DatasetError: an empty query set or gallery.
        """
        for name, fs in (("query set", query), ("gallery", gallery)):
            if len(fs) == 0:
                raise DatasetError(f"the {name} is empty: there is nothing to evaluate")
        blocks = self.blocks(query, gallery)
        stats = None
        if self.fmrs:  # the verification view of the same blocks (``eval.fmrs``)
            stats = VerificationStats(len(query) * len(gallery), self.fmrs)
            blocks = _tee(blocks, stats, query, gallery)
        result = rank_blocks(
            blocks,
            query.pids,
            gallery.pids,
            query.camids,
            gallery.camids,
            max_rank=self.max_rank,
            mode=mode,
        )
        if stats is not None:
            result.verification = stats.result()
        return result


def _tee(
    blocks: Iterator[tuple[int, np.ndarray]],
    stats: VerificationStats,
    query: FeatureSet,
    gallery: FeatureSet,
) -> Iterator[tuple[int, np.ndarray]]:
    for start, block in blocks:
        rows = slice(start, start + len(block))
        stats.update(block, query.pids[rows], query.camids[rows], gallery.pids, gallery.camids)
        yield start, block


def rerank_features(
    query: torch.Tensor | np.ndarray,
    gallery: torch.Tensor | np.ndarray,
    *,
    metric: str = "euclidean",
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    square: bool = True,
    model: Any = None,
) -> np.ndarray:
    """Re-ranked ``(Q, G)`` float32 distances from features (distances computed in blocks with
    ``metric``, or with the model's own distance when its type declares one: the
    :class:`~attnreid.evaluation.scoring.Scorer`'s distances)."""
    src = Scorer(model, metric=metric).distance_source(query, gallery)
    return collect(src, iter_rerank(src, k1, k2, lambda_value, square=square))
