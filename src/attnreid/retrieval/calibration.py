"""Match thresholds: from a labelled test set to "same person or not" at a false match rate.

``attnreid calibrate`` scores a model's labelled test split (the config's, or any labelled
folder given with ``data.*`` overrides) as a gallery index would rank it — the index's distance
(``1 - cos`` or squared euclidean, :meth:`Scorer.index_metric
<attnreid.evaluation.scoring.Scorer.index_metric>`), not a model's own evaluation distance
(DuATM's matching, SA-ResNet's per-query normalised distance) or re-ranking, which a faiss
index cannot compute — and stores, for each false match rate ``F``, the distance at or below
which a pair is declared a match with at most that share of impostor pairs declared one
(:mod:`attnreid.evaluation.verification`). The thresholds are written beside the model
(``<model file>.calibration.json``, which ``index build`` copies into the index), and optionally
into an index; ``search`` and ``serve`` turn distances into verdicts with :class:`Verdicts`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attnreid.engine.build import load_targets
from attnreid.errors import AttnReidError, ConfigError
from attnreid.evaluation.extractor import FeatureExtractor
from attnreid.evaluation.scoring import Scorer

__all__ = ["Verdicts", "calibrate", "calibration_beside", "load_thresholds"]

SUFFIX = ".calibration.json"


def calibrate(extractor: FeatureExtractor, fmrs: Sequence[float]) -> dict[str, Any]:
    """The thresholds of a model (a :class:`~attnreid.evaluation.extractor.FeatureExtractor`)
    at ``fmrs`` on the first test set of its config (``eval.targets``, else its dataset), with
    the numbers they come from (JSON-able)."""
    model, cfg = extractor.model, extractor.config
    dataset = load_targets(cfg)[0]
    query, gallery = (extractor.extract(dataset.split(s)) for s in ("query", "gallery"))
    metric = Scorer.from_config(model, cfg["eval"]).index_metric
    result = Scorer(None, metric=metric, fmrs=fmrs).score(query, gallery, dataset.eval_mode)
    v = result.verification
    usable = {f"{f:g}": t for f, t in zip(v.fmrs, v.thresholds) if math.isfinite(t)}
    return {
        "model": extractor.model_name,
        "dataset": dataset.name,
        "root": str(dataset.root),
        "metric": metric,
        "thresholds": usable,
        "tpr": {f"{f:g}": t for f, t in zip(v.fmrs, v.tmrs)},
        "num_genuine": v.num_genuine,
        "num_impostor": v.num_impostor,
        "rank1": result.rank(1),
        "mAP": result.mAP,
        "too_few_impostors": [f"{f:g}" for f, t in zip(v.fmrs, v.thresholds) if t == -math.inf],
    }


def calibration_beside(model_file: str | Path | None) -> dict[str, Any]:
    """The calibration written beside a model file, or ``{}``."""
    if model_file is None:
        return {}
    path = Path(str(model_file) + SUFFIX)
    return _read(path) if path.is_file() else {}


def _read(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data["thresholds"] = {str(k): float(v) for k, v in data["thresholds"].items()}
        return data
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(
            f"calibration file {path} is not readable thresholds (a JSON file written by "
            "attnreid calibrate)"
        ) from None


def load_thresholds(path: str | Path | None, index: Any) -> dict[str, float]:
    """Calibrated thresholds ``{fmr: distance}`` for a gallery ``index``: from the file
    ``path``, else the index's own (``index.info["calibration"]``), else none. A calibration
    of other distances than the index's is refused."""
    data = _read(path) if path is not None else index.info.get("calibration") or {}
    metric = data.get("metric")
    if metric and metric != index.metric:
        where = path or "stored in the index"
        raise ConfigError(
            f"the calibration ({where}) is for {metric} distances, the index's are {index.metric}"
        )
    return dict(data.get("thresholds", {}))


class Verdicts:
    """Distance -> ``"match"`` / ``"possible"`` / ``"no match"``.

    With calibrated ``thresholds`` (``{fmr: distance}``): *match* at or below the threshold of
    ``fmr``, *possible* at or below the threshold of the next larger calibrated rate (e.g. 1e-2
    for 1e-3), else *no match*. ``max_distance`` instead gives match / no match at one distance.
    With neither, there is no verdict (the object is false).
    """

    def __init__(
        self,
        thresholds: dict[str, float] | None = None,
        fmr: float = 1e-3,
        max_distance: float | None = None,
    ) -> None:
        self.strict: float | None = None
        self.loose: float | None = None
        self.describe = "no threshold (run attnreid calibrate, or pass --max-distance)"
        if max_distance is not None:
            self.strict = float(max_distance)
            self.describe = f"match at distance <= {max_distance:g}"
        elif thresholds:
            rates = {float(k): float(v) for k, v in thresholds.items()}
            if fmr not in rates:
                known = ", ".join(f"{r:g}" for r in sorted(rates))
                raise AttnReidError(
                    f"no calibrated threshold for FMR {fmr:g} (calibrated: {known})"
                )
            self.strict = rates[fmr]
            larger = sorted(r for r in rates if r > fmr)
            self.loose = rates[larger[0]] if larger else None
            self.describe = f"match at FMR {fmr:g} (distance <= {self.strict:.4g})" + (
                f", possible at FMR {larger[0]:g} (<= {self.loose:.4g})" if larger else ""
            )

    def __bool__(self) -> bool:
        return self.strict is not None

    def __call__(self, distance: float) -> str:
        if self.strict is None:
            raise ConfigError("no threshold to decide a match")
        if distance <= self.strict:
            return "match"
        if self.loose is not None and distance <= self.loose:
            return "possible"
        return "no match"
