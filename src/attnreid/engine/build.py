"""Building the pieces of a run from a config: the dataset (or the union of several, and the
test sets) and the model. (A trained model is opened by :func:`attnreid.load`,
:mod:`attnreid.engine.load`.)"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from attnreid.data.base import ReIDDataset, validation_split
from attnreid.data.combine import combine_datasets, dataset_specs, load_specs
from attnreid.engine.init_from import init_from
from attnreid.models import build_model
from attnreid.models.registry import ReIDModel, model_factory


def build_model_from_config(cfg: dict[str, Any], num_classes: int) -> ReIDModel:
    """``build_model`` with the config's name, weights and options. Models whose layers depend
    on the input size (an ``input_size`` option, e.g. CCAN's attention) get the config's
    ``(data.height, data.width)`` unless the preset sets it. The model carries the config
    (``model.config``), so that :func:`attnreid.evaluate` evaluates it as the preset says.
    ``model.init_from`` then loads what fits of another re-ID checkpoint
    (:mod:`attnreid.engine.init_from`)."""
    m = cfg["model"]
    options = dict(m["options"])
    if "input_size" in inspect.signature(model_factory(m["name"])).parameters:
        options.setdefault("input_size", [cfg["data"]["height"], cfg["data"]["width"]])
    model = build_model(m["name"], num_classes, m["pretrained"], **options)
    if m["init_from"]:
        print(init_from(model, m["init_from"]).summary(), file=sys.stderr)
    model.config = cfg
    return model


def load_dataset(cfg: dict[str, Any]) -> ReIDDataset:
    """The config's dataset, or the union of its datasets (:mod:`attnreid.data.combine`); with
    ``data.validation_ids``, its validation split instead of its test split
    (:func:`~attnreid.data.base.validation_split`)."""
    d = cfg["data"]
    specs = dataset_specs(d["dataset"], d["root"], d["options"], "data.dataset")
    dataset = combine_datasets(load_specs(specs))
    if d["validation_ids"]:
        return validation_split(dataset, int(d["validation_ids"]), int(d["validation_seed"]))
    return dataset


def load_targets(cfg: dict[str, Any]) -> list[ReIDDataset]:
    """The test sets ``attnreid eval`` scores: ``eval.targets``, else the training data's."""
    d, targets = cfg["data"], cfg["eval"]["targets"]
    if not targets:
        return [load_dataset(cfg)]
    return load_specs(dataset_specs(targets, d["root"], d["options"], "eval.targets"))
