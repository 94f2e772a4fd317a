"""Evaluation of a model on a dataset's query / gallery protocol, as its config says.

``evaluate(model, dataset)`` extracts query and gallery features, computes the distance (the
model's own if it defines one, e.g. DuATM; else squared euclidean or cosine) and scores CMC /
mAP / mINP with the dataset's protocol (Market-style junk removal, or CUHK03 single-gallery-
shot). Every setting comes from a config: the one the model carries (``model.config``, set by
:func:`attnreid.engine.build.build_model_from_config` and by loading a checkpoint), so that a
network is evaluated as its preset says (input size, flip averaging, video clip length, metric)
— exactly what ``attnreid eval`` and training-time evaluation run, through
:func:`make_evaluator`. A model without a config gets the library defaults; keyword arguments
override single settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from attnreid.config import load_config
from attnreid.data.base import ReIDDataset, ReIDItem
from attnreid.data.loaders import build_test_loader
from attnreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms
from attnreid.errors import ConfigError, DatasetError
from attnreid.evaluation.blocked import evaluate_features_blocked
from attnreid.evaluation.distance import compute_distance
from attnreid.evaluation.distributed import (
    extract_features_sharded,
    process_group,
    sync_model_state,
)
from attnreid.evaluation.features import FeatureSet, extract_features
from attnreid.evaluation.metrics import RankResult, evaluate_rank
from attnreid.utils.device import resolve_device

#: Query x gallery distances above which :func:`score_features` scores in query blocks.
DEFAULT_BLOCK_THRESHOLD = 1 << 26


def score_features(
    query: FeatureSet,
    gallery: FeatureSet,
    *,
    metric: str = "euclidean",
    normalize: bool = False,
    mode: str = "market",
    max_rank: int = 50,
    model: nn.Module | None = None,
    rerank: bool = False,
    rerank_k1: int = 20,
    rerank_k2: int = 6,
    rerank_lambda: float = 0.3,
    block_threshold: int = DEFAULT_BLOCK_THRESHOLD,
) -> RankResult:
    """Distances between feature sets, then ranking metrics.

    ``rerank``: k-reciprocal re-ranking (:mod:`attnreid.evaluation.rerank`). Above
    ``block_threshold`` query x gallery distances (and always with ``rerank``) the distances are
    computed and scored in query blocks (:mod:`attnreid.evaluation.blocked`), never holding the
    whole matrix; the result is the same.

    Raises:
        DatasetError: an empty query set or gallery.
    """
    for name, fs in (("query set", query), ("gallery", gallery)):
        if len(fs) == 0:
            raise DatasetError(f"the {name} is empty: there is nothing to evaluate")
    if rerank or len(query) * len(gallery) > block_threshold:
        return evaluate_features_blocked(
            query,
            gallery,
            metric=metric,
            normalize=normalize,
            mode=mode,
            max_rank=max_rank,
            model=model,
            rerank=rerank,
            k1=rerank_k1,
            k2=rerank_k2,
            lambda_value=rerank_lambda,
        )
    qf, gf = query.features, gallery.features
    distmat = None
    if model is not None and hasattr(model, "compute_distance"):
        distmat = model.compute_distance(qf, gf)
    if distmat is None:
        if normalize:
            qf, gf = (
                torch.nn.functional.normalize(qf, dim=1),
                torch.nn.functional.normalize(gf, dim=1),
            )
        distmat = compute_distance(qf, gf, metric=metric)
    return evaluate_rank(
        distmat.cpu().numpy(),
        query.pids,
        gallery.pids,
        query.camids,
        gallery.camids,
        max_rank=max_rank,
        mode=mode,
    )


def score_options(eval_cfg: dict[str, Any]) -> dict[str, Any]:
    """The arguments of :func:`score_features` from a config's ``eval`` section (all but the
    protocol ``mode``, which depends on the dataset)."""
    return {
        "metric": eval_cfg["metric"],
        "normalize": eval_cfg["normalize"],
        "max_rank": eval_cfg["max_rank"],
        "rerank": eval_cfg["rerank"],
        "rerank_k1": eval_cfg["rerank_k1"],
        "rerank_k2": eval_cfg["rerank_k2"],
        "rerank_lambda": eval_cfg["rerank_lambda"],
        "block_threshold": eval_cfg["block_threshold"],
    }


def input_stats(model: nn.Module, cfg: dict[str, Any]) -> tuple[Any, Any]:
    """The normalisation the model's weights expect (``data.normalization: backbone``), or
    ImageNet's."""
    if cfg["data"]["normalization"] == "backbone":
        return (
            getattr(model, "input_mean", IMAGENET_MEAN),
            getattr(model, "input_std", IMAGENET_STD),
        )
    if cfg["data"]["normalization"] == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    raise ConfigError("data.normalization must be 'backbone' or 'imagenet'")


def test_loader_from_config(
    items: Sequence[ReIDItem],
    cfg: dict[str, Any],
    mean: Any,
    std: Any,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
) -> DataLoader:
    """The test-time loader of a config, the one place every feature extraction (evaluation,
    ``extract``, pictures, gallery indexes) builds it: the config's input size and the model's
    normalisation, ``data.test_batch_size`` and ``data.workers`` (unless given), and for
    tracklets the frame sampling ``data.test_frames`` with clips of ``data.test_seq_len``
    frames (``None``: ``data.seq_len``)."""
    d = cfg["data"]
    tf = build_transforms(d["height"], d["width"], train=False, mean=mean, std=std)
    return build_test_loader(
        items,
        tf,
        batch_size=d["test_batch_size"] if batch_size is None else batch_size,
        workers=d["workers"] if workers is None else workers,
        seq_len=d["test_seq_len"] or d["seq_len"],
        test_frames=d["test_frames"],
    )


def extract_query_gallery(
    model: nn.Module, dataset: ReIDDataset, cfg: dict[str, Any], device: torch.device
) -> tuple[FeatureSet, FeatureSet]:
    """Query and gallery test features of ``model`` (one process), as the config extracts them
    (``eval.flip``: averaged with the mirrored images)."""
    mean, std = input_stats(model, cfg)
    model.to(device)
    q, g = (
        extract_features(
            model,
            test_loader_from_config(dataset.split(s), cfg, mean, std),
            device=device,
            flip=cfg["eval"]["flip"],
        )
        for s in ("query", "gallery")
    )
    return q, g


def make_evaluator(
    dataset: ReIDDataset, cfg: dict[str, Any], device: torch.device | str
) -> Callable[[nn.Module], RankResult | None]:
    """A function model -> RankResult on the dataset's query / gallery, with the config's test
    loader (:func:`test_loader_from_config`, the model's normalisation) and ``eval`` section.

    Under DDP it is collective: every rank extracts its share of the features with rank 0's
    model (:mod:`attnreid.evaluation.distributed`), on the device the model is on; rank 0
    scores them and the other ranks get None."""
    e = cfg["eval"]
    mode = dataset.eval_mode if e["mode"] == "auto" else e["mode"]

    def run(model: nn.Module) -> RankResult | None:
        rank, world = process_group()
        if world > 1:  # the model is on this rank's device already
            dev = next(model.parameters()).device
            sync_model_state(model)
        else:
            dev = resolve_device(device)
            model = model.to(dev)
        mean, std = input_stats(model, cfg)

        def loader(items: Sequence[ReIDItem]) -> DataLoader:
            return test_loader_from_config(items, cfg, mean, std)

        q, g = [
            extract_features_sharded(model, dataset.split(s), loader, device=dev, flip=e["flip"])
            for s in ("query", "gallery")
        ]
        if rank != 0:
            return None
        return score_features(q, g, mode=mode, model=model, **score_options(e))

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
