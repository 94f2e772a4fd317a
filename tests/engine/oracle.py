"""What a training run's evaluation must report, recomputed independently.

:func:`capture_scoring` records the query / gallery features (and settings) that training-time
evaluation scores; :func:`reference_row` recomputes the ranking metrics from their distances
with the reference per-query loop of ``tests/evaluation/reference.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnreid.evaluation.scoring import Scorer
from attnreid.utils.distance import compute_distance
from tests.evaluation.reference import reference_market


def capture_scoring(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every call of the evaluation's scoring (``Scorer.score``), in order: its features,
    settings (``model``: the model whose own distance ranks, or None) and result."""
    calls: list[dict[str, Any]] = []
    real = Scorer.score

    def spy(scorer, query, gallery, mode="market"):
        result = real(scorer, query, gallery, mode)
        settings = {k: getattr(scorer, k) for k in ("model", "metric", "normalize", "max_rank")}
        calls.append({"query": query, "gallery": gallery, "result": result, "mode": mode,
                      "rerank": scorer.rerank, **settings})  # fmt: skip
        return result

    monkeypatch.setattr(Scorer, "score", spy)
    return calls


def _distances(call: dict[str, Any]) -> np.ndarray:
    """The query x gallery distances: the model's own if it ranks with it, else the library's
    euclidean / cosine distance (tests/evaluation/test_distance.py checks it) of the features,
    L2-normalised first with ``normalize``. (The features of a network trained for a step are
    nearly equal, so a distance computed another way, e.g. in float64, breaks near-ties in
    another order; the ranking metrics are what is recomputed here.)"""
    qf, gf = call["query"].features, call["gallery"].features
    model = call.get("model")
    if model is not None:
        with torch.no_grad():
            return model.compute_distance(qf, gf).detach().cpu().numpy()
    if call.get("normalize", False):
        qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
    return compute_distance(qf, gf, metric=call.get("metric", "euclidean")).numpy()


def reference_row(call: dict[str, Any]) -> dict[str, float | int]:
    """rank-1 / rank-5, mAP, mINP and query counts of a captured scoring, by the reference
    (Market protocol, no re-ranking: what every preset evaluates the synthetic set with)."""
    assert call.get("mode", "market") == "market" and not call.get("rerank", False)
    q, g = call["query"], call["gallery"]
    cmc, m_ap, m_inp, valid, skipped = reference_market(
        _distances(call), q.pids, g.pids, q.camids, g.camids, call.get("max_rank", 50)
    )
    row: dict[str, float | int] = {"rank1": cmc[0], "mAP": m_ap, "mINP": m_inp}
    if cmc.size >= 5:
        row["rank5"] = cmc[4]
    return {**row, "num_valid_queries": valid, "num_skipped_queries": skipped}


def assert_row(row: dict[str, Any], expected: dict[str, Any], tol: float = 1e-5) -> None:
    """``row`` (a metrics.json / evaluation row) holds ``expected``'s values."""
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, abs=tol), (key, row[key], value)
