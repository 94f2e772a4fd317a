"""One-call evaluation of a model on a dataset's query / gallery protocol.

``evaluate(model, dataset)`` extracts query and gallery features (with flip averaging),
computes the distance (the model's own if it defines one, e.g. DuATM; else squared euclidean
or cosine) and scores CMC / mAP / mINP with the dataset's protocol (Market-style junk removal,
or CUHK03 single-gallery-shot). This is what ``attnreid eval`` and training-time evaluation run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from attnreid.data.base import ReIDDataset
from attnreid.data.loaders import build_test_loader
from attnreid.data.transforms import build_transforms
from attnreid.errors import DatasetError
from attnreid.evaluation.blocked import evaluate_features_blocked
from attnreid.evaluation.distance import compute_distance
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
    """The re-ranking and blocking arguments of :func:`score_features` from a config's
    ``eval`` section."""
    return {
        "rerank": eval_cfg["rerank"],
        "rerank_k1": eval_cfg["rerank_k1"],
        "rerank_k2": eval_cfg["rerank_k2"],
        "rerank_lambda": eval_cfg["rerank_lambda"],
        "block_threshold": eval_cfg["block_threshold"],
    }


def evaluate(
    model: nn.Module,
    dataset: ReIDDataset,
    *,
    height: int = 256,
    width: int = 128,
    batch_size: int = 128,
    device: str | torch.device = "auto",
    flip: bool = True,
    metric: str = "euclidean",
    normalize: bool = False,
    mode: str = "auto",
    max_rank: int = 50,
    workers: int = 0,
    mean: Any = None,
    std: Any = None,
    rerank: bool = False,
    seq_len: int = 4,
    test_frames: str = "all",
) -> RankResult:
    """Evaluate ``model`` on ``dataset.query`` vs ``dataset.gallery`` (``rerank``: with
    k-reciprocal re-ranking). For tracklets, ``test_frames`` and ``seq_len`` choose the frames
    (see :func:`attnreid.data.loaders.build_test_loader`)."""
    dev = resolve_device(device)
    model = model.to(dev)
    transform = build_transforms(
        height,
        width,
        train=False,
        mean=mean or getattr(model, "input_mean", (0.485, 0.456, 0.406)),
        std=std or getattr(model, "input_std", (0.229, 0.224, 0.225)),
    )
    feats = {}
    for split in ("query", "gallery"):
        loader = build_test_loader(
            dataset.split(split),
            transform,
            batch_size=batch_size,
            workers=workers,
            seq_len=seq_len,
            test_frames=test_frames,
        )
        feats[split] = extract_features(model, loader, device=dev, flip=flip)
    return score_features(
        feats["query"],
        feats["gallery"],
        metric=metric,
        normalize=normalize,
        mode=dataset.eval_mode if mode == "auto" else mode,
        max_rank=max_rank,
        model=model,
        rerank=rerank,
    )
