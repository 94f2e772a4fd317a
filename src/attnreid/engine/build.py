"""Building the pieces of a run from a config: dataset, model, input statistics, evaluator."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from attnreid.data import build_dataset, build_test_loader, build_transforms
from attnreid.data.base import ReIDDataset
from attnreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from attnreid.errors import ConfigError
from attnreid.evaluation.distributed import (
    extract_features_sharded,
    process_group,
    sync_model_state,
)
from attnreid.evaluation.evaluate import score_features, score_options
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


def make_evaluator(
    dataset: ReIDDataset, cfg: dict[str, Any], mean: Any, std: Any, device: torch.device
) -> Any:
    """A function model -> RankResult on the dataset's query / gallery.

    Under DDP it is collective: every rank extracts its share of the features with rank 0's
    model (:mod:`attnreid.evaluation.distributed`), on the device the model is on; rank 0
    scores them and the other ranks get None."""
    d, e = cfg["data"], cfg["eval"]
    tf = build_transforms(d["height"], d["width"], train=False, mean=mean, std=std)
    mode = dataset.eval_mode if e["mode"] == "auto" else e["mode"]

    def loader(items: Any) -> Any:
        return build_test_loader(
            items,
            tf,
            batch_size=d["test_batch_size"],
            workers=d["workers"],
            seq_len=d["seq_len"],
            test_frames=d["test_frames"],
        )

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
