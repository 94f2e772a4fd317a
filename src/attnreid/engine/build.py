"""Building the pieces of a run from a config: the dataset and the model; and the one loader
of a model with its config (:func:`load_model_and_config`: a checkpoint, an ONNX model, or a
config's untrained network).

(The test-time pieces, :func:`~attnreid.evaluation.evaluate.make_evaluator` and its loader,
are in :mod:`attnreid.evaluation.evaluate`.)"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from attnreid.config import load_config, stored_config
from attnreid.data.base import ReIDDataset
from attnreid.data.combine import combine_datasets, dataset_specs, load_specs
from attnreid.engine.checkpoint import load_model_from_checkpoint
from attnreid.engine.init_from import init_from
from attnreid.errors import CheckpointError, ConfigError
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
    """The config's dataset, or the union of its datasets (:mod:`attnreid.data.combine`)."""
    d = cfg["data"]
    specs = dataset_specs(d["dataset"], d["root"], d["options"], "data.dataset")
    return combine_datasets(load_specs(specs))


def load_targets(cfg: dict[str, Any]) -> list[ReIDDataset]:
    """The test sets ``attnreid eval`` scores: ``eval.targets``, else the training data's."""
    d, targets = cfg["data"], cfg["eval"]["targets"]
    if not targets:
        return [load_dataset(cfg)]
    return load_specs(dataset_specs(targets, d["root"], d["options"], "eval.targets"))




def load_model_and_config(
    checkpoint: str | Path | None = None,
    onnx: str | Path | None = None,
    *,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    untrained: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """A model and its config, from one of three sources: a ``checkpoint`` of ``attnreid
    train`` (the network rebuilt, in eval mode), an ``onnx`` model of ``attnreid export onnx``
    (run by onnxruntime), or, ``untrained``, the network ``config`` builds before any re-ID
    training (its ``model.pretrained`` backbone and a new head, initialised with the config's
    seed as training starts it). The config is ``config`` (a preset or YAML file, which must
    be for the stored model's ``model.name``), else the one stored with the model; then
    ``overrides``. The model carries it (``model.config``)."""
    if untrained:
        from attnreid.utils.seed import seed_all

        cfg = load_config(config, overrides)
        classes = load_dataset(cfg).num_train_pids
        seed_all(cfg["seed"])  # the new head's initialisation, as training starts it
        return build_model_from_config(cfg, classes), cfg
    if (checkpoint is None) == (onnx is None):
        raise ConfigError("give exactly one of a checkpoint or an ONNX model")
    model: nn.Module
    if onnx is not None:
        from attnreid.retrieval.export import OnnxModel

        model = OnnxModel(onnx)
        name, stored = model.model_name, stored_config(model.config)
        h, w = model.input_size
        stored.setdefault("data", {}).update({"height": h, "width": w})
    else:
        model, meta = load_model_from_checkpoint(checkpoint)  # type: ignore[arg-type]
        name, stored = meta["model"], stored_config(meta.get("config"))
    if config is not None:
        cfg = load_config(config, overrides)
        if cfg["model"]["name"] != name:
            what = f"checkpoint {checkpoint}" if onnx is None else f"ONNX model {onnx}"
            raise CheckpointError(
                f"{what} holds model {name!r} but config {config} is for {cfg['model']['name']!r}"
            )
    else:
        try:
            load_config(None, **stored)
        except ConfigError as exc:
            raise ConfigError(f"the config stored with the model does not load: {exc}") from None
        cfg = load_config(None, overrides, **stored)
    model.config = cfg
    return model, cfg
