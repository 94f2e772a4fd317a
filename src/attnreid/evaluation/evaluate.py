"""Evaluation of a model on a dataset's query / gallery protocol, as its config says.

``evaluate(model, dataset)`` extracts query and gallery features and scores them with the
config's :class:`~attnreid.evaluation.scoring.Scorer` (the model's own distance if its type
declares one, e.g. DuATM; else squared euclidean or cosine; optional re-ranking; query blocks
ranked as they come): CMC / mAP / mINP with the dataset's protocol (Market-style junk removal,
or CUHK03 single-gallery-shot). Every setting comes from a config: the one the model carries
(``model.config``, set by :func:`attnreid.engine.build.build_model_from_config` and by
:func:`attnreid.load`), so that a network is evaluated as its preset says (input size, flip
averaging, video clip length, metric) — exactly what ``attnreid eval`` and training-time
evaluation run, through :func:`make_evaluator` and its
:class:`~attnreid.evaluation.extractor.FeatureExtractor`.
A model without a config gets the library defaults; keyword arguments override single settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from attnreid.config import load_config
from attnreid.data.base import ReIDDataset
from attnreid.errors import ConfigError
from attnreid.evaluation.distributed import extract_sharded, process_group, sync_model_state
from attnreid.evaluation.extractor import FeatureExtractor
from attnreid.evaluation.metrics import RankResult
from attnreid.evaluation.scoring import Scorer


def make_evaluator(
    dataset: ReIDDataset, cfg: dict[str, Any], device: torch.device | str
) -> Callable[[nn.Module], RankResult | None]:
    """A function model -> RankResult on the dataset's query / gallery, with the config's test
    preprocessing (:class:`~attnreid.evaluation.extractor.FeatureExtractor`) and ``eval`` section
    (:meth:`Scorer.from_config <attnreid.evaluation.scoring.Scorer.from_config>`).

    Under DDP it is collective: every rank extracts its share of the features with rank 0's
    model (:mod:`attnreid.evaluation.distributed`), on the device the model is on; rank 0
    scores them and the other ranks get None."""
    e = cfg["eval"]
    mode = dataset.eval_mode if e["mode"] == "auto" else e["mode"]

    def run(model: nn.Module) -> RankResult | None:
        rank, world = process_group()
        if world > 1:  # the model is on this rank's device already
            dev: Any = next(model.parameters()).device
            sync_model_state(model)
        else:
            dev = device
        extractor = FeatureExtractor(model, cfg, device=dev)
        q, g = [extract_sharded(extractor, dataset.split(s)) for s in ("query", "gallery")]
        if rank != 0:
            return None
        return Scorer.from_config(model, e).score(q, g, mode)

    return run


#: ``evaluate`` keyword -> the config key it overrides.
_OVERRIDES = {
    "height": ("data", "height"),
    "width": ("data", "width"),
    "batch_size": ("data", "test_batch_size"),
    "workers": ("data", "workers"),
    "seq_len": ("data", "test_seq_len"),
    "test_frames": ("data", "test_frames"),
    "flip": ("eval", "flip"),
    "metric": ("eval", "metric"),
    "normalize": ("eval", "normalize"),
    "mode": ("eval", "mode"),
    "max_rank": ("eval", "max_rank"),
    "rerank": ("eval", "rerank"),
}


def evaluate(
    model: nn.Module,
    dataset: ReIDDataset,
    config: dict[str, Any] | None = None,
    *,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> RankResult:
    """Evaluate ``model`` on ``dataset.query`` vs ``dataset.gallery`` with the settings of
    ``config``, else of the config the model carries (``model.config``: a model built from a
    preset or loaded from a checkpoint), else the library defaults.

    ``overrides`` change single settings: ``height``, ``width``, ``batch_size``, ``workers``,
    ``seq_len`` (video test clip length), ``test_frames``, ``flip``, ``metric``, ``normalize``,
    ``mode``, ``max_rank``, ``rerank``; ``device`` defaults to the config's.

    Raises:
        ConfigError: an unknown override.
    """
    base = config or getattr(model, "config", None) or load_config(None)
    cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in overrides.items():
        if key not in _OVERRIDES:
            raise ConfigError(
                f"evaluate() has no setting {key!r} (settings: {', '.join(_OVERRIDES)})"
            )
        if value is not None:
            section, name = _OVERRIDES[key]
            cfg[section][name] = value
    result = make_evaluator(dataset, cfg, device or cfg["device"])(model)
    assert result is not None  # one process: rank 0
    return result
