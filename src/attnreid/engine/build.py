"""Building the pieces of a run from a config: dataset, model, input statistics, evaluator."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from attnreid.data import build_dataset, build_test_loader, build_transforms
from attnreid.data.base import ReIDDataset, ReIDItem
from attnreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from attnreid.errors import ConfigError
from attnreid.evaluation.distributed import (
    extract_features_sharded,
    process_group,
    sync_model_state,
)
from attnreid.evaluation.evaluate import score_features, score_options
from attnreid.evaluation.features import FeatureSet, extract_features
from attnreid.evaluation.metrics import RankResult
from attnreid.models import build_model
from attnreid.models.registry import ReIDModel, model_factory


def build_model_from_config(cfg: dict[str, Any], num_classes: int) -> ReIDModel:
    """``build_model`` with the config's name, weights and options. Models whose layers depend
    on the input size (an ``input_size`` option, e.g. CCAN's attention) get the config's
    ``(data.height, data.width)`` unless the preset sets it."""
    m = cfg["model"]
    options = dict(m["options"])
    if "input_size" in inspect.signature(model_factory(m["name"])).parameters:
        options.setdefault("input_size", [cfg["data"]["height"], cfg["data"]["width"]])
    return build_model(m["name"], num_classes, m["pretrained"], **options)


def input_stats(model: ReIDModel, cfg: dict[str, Any]) -> tuple[Any, Any]:
    """The normalisation the model's weights expect, or ImageNet's."""
    if cfg["data"]["normalization"] == "backbone":
        return model.input_mean, model.input_std
    if cfg["data"]["normalization"] == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    raise ConfigError("data.normalization must be 'backbone' or 'imagenet'")


def load_dataset(cfg: dict[str, Any]) -> ReIDDataset:
    d = cfg["data"]
    return build_dataset(d["dataset"], d["root"], **d["options"])


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
    model: ReIDModel, dataset: ReIDDataset, cfg: dict[str, Any], device: torch.device
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
    dataset: ReIDDataset, cfg: dict[str, Any], mean: Any, std: Any, device: torch.device
) -> Any:
    """A function model -> RankResult on the dataset's query / gallery.

    Under DDP it is collective: every rank extracts its share of the features with rank 0's
    model (:mod:`attnreid.evaluation.distributed`), on the device the model is on; rank 0
    scores them and the other ranks get None."""
    e = cfg["eval"]
    mode = dataset.eval_mode if e["mode"] == "auto" else e["mode"]

    def loader(items: Any) -> Any:
        return test_loader_from_config(items, cfg, mean, std)

    def run(model: ReIDModel) -> RankResult | None:
        rank, world = process_group()
        if world > 1:  # the model is on this rank's device already
            dev = next(model.parameters()).device
            sync_model_state(model)
        else:
            dev = device
            model = model.to(dev)
        q, g = [
            extract_features_sharded(model, dataset.split(s), loader, device=dev, flip=e["flip"])
            for s in ("query", "gallery")
        ]
        if rank != 0:
            return None
        return score_features(
            q,
            g,
            metric=e["metric"],
            normalize=e["normalize"],
            mode=mode,
            max_rank=e["max_rank"],
            model=model,
            **score_options(e),
        )

    return run
