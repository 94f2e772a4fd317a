"""Large-gallery evaluation: distances and CMC / mAP / mINP in query blocks.

The whole ``Q x G`` distance matrix of a large benchmark does not fit comfortably in memory
(MSMT17: 11,659 queries x 82,161 gallery images = 3.8 GB in float32, and torchreid-style
evaluation makes several copies of it). Here the distances of a block of queries are computed,
scored and dropped before the next block: memory is bounded by the features plus one block
(``block_elems`` distances, 128 MB of float32 by default), whatever the gallery size.

The scoring reuses the per-block kernels of :mod:`attnreid.evaluation.metrics` (the same
functions :func:`~attnreid.evaluation.metrics.evaluate_rank` runs on its own blocks, with the
same sub-block sizes and the same order of the CUHK03 random draws) and aggregates the
per-query statistics in the same way, so the result is *identical* to ``evaluate_rank`` on the
full matrix, for both protocols.

Blocks come from :func:`feature_distance_blocks` (the configured metric, or a model's own
``compute_distance``, e.g. DuATM's, called one query block at a time) or from
:func:`~attnreid.evaluation.rerank.iter_rerank` (k-reciprocal re-ranking, itself blocked).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from attnreid.errors import ConfigError, DatasetError
from attnreid.evaluation import _rank_kernels as rk
from attnreid.evaluation import metrics as _m
from attnreid.evaluation.distance import compute_distance
from attnreid.evaluation.features import FeatureSet
from attnreid.evaluation.metrics import RankResult
from attnreid.evaluation.rerank import FeatureDistances, has_own_distance, iter_rerank

__all__ = [
    "DEFAULT_BLOCK_ELEMS",
    "evaluate_blocks",
    "evaluate_features_blocked",
    "feature_distance_blocks",
]

#: Distances held at once by :func:`feature_distance_blocks` (128 MB of float32).
DEFAULT_BLOCK_ELEMS = 1 << 25


class _Window:
    """Looks like the full distance matrix to the metric kernels, for the rows of one block."""

    def __init__(self, block: np.ndarray, start: int) -> None:
        self.block, self.start = block, start

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self.block[rows.start - self.start : rows.stop - self.start]


def feature_distance_blocks(
    query: torch.Tensor,
    gallery: torch.Tensor,
    *,
    metric: str = "euclidean",
    model: Any = None,
    block_elems: int = DEFAULT_BLOCK_ELEMS,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_query, distances)`` for consecutive query blocks, ``(rows, G)`` float32.

    ``model.compute_distance(query_block, gallery)`` is used when the model defines it (returns
    something other than None), else :func:`~attnreid.evaluation.distance.compute_distance`.
    """
    num_q, num_g = int(query.shape[0]), int(gallery.shape[0])
    rows = max(1, block_elems // max(1, num_g))
    own = model is not None and hasattr(model, "compute_distance")
    for start in range(0, num_q, rows):
        block = query[start : start + rows]
        d = None
        if own:
            with torch.no_grad():
                d = model.compute_distance(block, gallery)
            own = d is not None
        if d is None:
            d = compute_distance(block, gallery, metric=metric)
        yield start, d.detach().cpu().numpy() if isinstance(d, torch.Tensor) else np.asarray(d)


def evaluate_blocks(
    blocks: Iterable[tuple[int, np.ndarray]],
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    *,
    max_rank: int = 50,
    mode: str = "market",
    query_block: int = 512,
    num_repeats: int = 10,
    seed: int = 0,
) -> RankResult:
    """CMC, mAP and mINP from distance blocks ``(first_query, (rows, G) array)`` given in query
    order; same arguments and result as :func:`~attnreid.evaluation.metrics.evaluate_rank`."""
    if mode not in _m.EVAL_MODES:
        raise ConfigError(
            f"unknown evaluation mode {mode!r}; valid choices: {', '.join(_m.EVAL_MODES)}"
        )
    max_rank = _m._check_positive_int(max_rank, "max_rank")
    query_block = _m._check_positive_int(query_block, "query_block")
    num_repeats = _m._check_positive_int(num_repeats, "num_repeats")
    qp, gp = _m._as_ids(q_pids, "q_pids"), _m._as_ids(g_pids, "g_pids")
    qc, gc = _m._as_ids(q_camids, "q_camids"), _m._as_ids(g_camids, "g_camids")
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
    groups = _m._Groups(qp, gp)
    packed_rows = rk.max_packed_rows(num_g)
    chunk = min(query_block, packed_rows) if packed_rows > 0 else query_block
    if mode == "market":
        chunk = max(1, min(chunk, _m._MARKET_CHUNK_ELEMS // num_g))
    else:
        chunk = max(1, min(chunk, _m._CUHK03_CHUNK_ELEMS // (num_repeats * num_g)))
        rng = np.random.default_rng(seed)
        low = np.uint64((1 << rk.index_bits(num_g)) - 1)
        gidx = np.arange(num_g, dtype=np.uint64)

    parts: list[tuple[np.ndarray, ...]] = []
    done = 0
    for start, block in blocks:
        d = _m._as_distmat(block)
        if start != done or d.shape[1] != num_g or done + d.shape[0] > num_q:
            raise ConfigError(
                f"distance block of shape {d.shape} at query {start} does not continue the "
                f"{done} queries scored so far of a {num_q} x {num_g} evaluation"
            )
        stop = start + d.shape[0]
        win = _Window(d, start)
        bounds = [(s, min(s + chunk, stop)) for s in range(start, stop, chunk)]
        if mode == "market":
            parts += _m._map_blocks(
                lambda b, w=win: _m._market_block(w, qc, gc, groups, *b), bounds
            )
        else:
            for s, e in bounds:
                keys = rng.integers(0, 2**64, size=(e - s, num_repeats, num_g), dtype=np.uint64)
                keys &= ~low
                keys |= gidx
                parts.append(_m._cuhk03_block(win, qp, qc, gp, gc, groups, keys, max_rank, s, e))
        done = stop
    if done != num_q:
        raise ConfigError(f"distance blocks covered {done} of {num_q} queries")
    return _m.aggregate_parts(parts, mode, num_q, max_rank, num_repeats)



def evaluate_features_blocked(
    query: FeatureSet,
    gallery: FeatureSet,
    *,
    metric: str = "euclidean",
    normalize: bool = False,
    mode: str = "market",
    max_rank: int = 50,
    model: Any = None,
    rerank: bool = False,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    block_elems: int = DEFAULT_BLOCK_ELEMS,
) -> RankResult:
    """Score query vs gallery features without ever holding the ``Q x G`` distance matrix.

    Same result as computing the full matrix and calling ``evaluate_rank`` on it (``rerank``:
    on the k-reciprocal re-ranked matrix, see :mod:`attnreid.evaluation.rerank`).
    """
    qf, gf = query.features, gallery.features
    if not has_own_distance(model, qf[:1], gf[:1]):
        model = None  # the configured metric (as score_features: normalize applies to it only)
        if normalize:
            qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
    if rerank:
        src = FeatureDistances(qf, gf, metric, model)
        blocks: Iterable[tuple[int, np.ndarray]] = iter_rerank(src, k1, k2, lambda_value)
    else:
        blocks = feature_distance_blocks(
            qf, gf, metric=metric, model=model, block_elems=block_elems
        )
    return evaluate_blocks(
        blocks,
        query.pids,
        gallery.pids,
        query.camids,
        gallery.camids,
        max_rank=max_rank,
        mode=mode,
    )
