"""``attnreid.load``: the one way to open a re-ID model, whatever file it is in.

>>> extractor = attnreid.load("runs/x/checkpoints/last.ckpt")  # doctest: +SKIP
>>> extractor.model, extractor.config  # the network and its config  # doctest: +SKIP
>>> feats = extractor(crops)  # through its test preprocessing  # doctest: +SKIP

It returns a :class:`~attnreid.evaluation.extractor.FeatureExtractor`: the model (in eval
mode), the config it was trained and is evaluated with, and its test preprocessing, so that
every command, the gallery index and the server extract features the same way. What the file
is, is read from its name:

* ``.ckpt`` / ``.pth`` / ``.pt``: a checkpoint of ``attnreid train`` (the network rebuilt from
  the description it records, ``torch.load(weights_only=True)``: a checkpoint never runs code);
* ``.safetensors``: the weights training writes beside each checkpoint, with the description
  in the header (no pickle at all);
* ``.onnx``: a model of ``attnreid export onnx``, run by onnxruntime
  (:class:`~attnreid.models.exported.OnnxModel`);
* an ``*_openvino_model`` folder (or its ``.xml`` / ``.bin``): a model of ``attnreid export
  openvino``, run by OpenVINO (:class:`~attnreid.models.exported.OpenVinoModel`);
* none, with ``untrained=True``: the network ``config`` builds before any re-ID training (its
  ``model.pretrained`` backbone and a new head, initialised with the config's seed as training
  starts it).

The config is ``config`` (a preset, a YAML file, or a dict; it must be for the stored model's
``model.name``), else the one stored with the model; then ``overrides``. ``vectors=True`` is
for what compares one vector per image with a metric (a gallery index, a tracker, an exported
graph): a model whose test features are sequences that only its own distance compares
(DuATM's matching) gives its feature vector instead (``rank_with: feature``, said on
stderr). The model carries the config (``model.config``). A file of another kind, a damaged
one or one that does not fit its description is refused with one line naming it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnreid.config import load_config, stored_config
from attnreid.engine.build import build_model_from_config, load_dataset
from attnreid.engine.checkpoint import checkpoint_meta, model_state_dict, read_checkpoint
from attnreid.engine.safetensors_io import read_safetensors
from attnreid.errors import CheckpointError, ConfigError
from attnreid.evaluation.extractor import FeatureExtractor
from attnreid.models.exported import OnnxModel, OpenVinoModel
from attnreid.models.registry import build_model
from attnreid.utils.distance import ranks_sequences
from attnreid.utils.seed import seed_all

__all__ = ["load"]


def load(
    source: str | Path | None = None,
    *,
    config: str | Path | dict[str, Any] | None = None,
    overrides: Sequence[str] = (),
    untrained: bool = False,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    vectors: bool = False,
) -> FeatureExtractor:
    """The model in ``source`` with its config and test preprocessing (see the module
    docstring); ``vectors``: one vector per image (see there); ``device``, ``batch_size``,
    ``workers``: as :class:`~attnreid.evaluation.extractor.FeatureExtractor` takes them
    (default: the config's).

    Raises:
        CheckpointError: a file that is not a model attnreid wrote, or does not fit its model.
        ConfigError: neither or both of ``source`` and ``untrained``; a config for another model.
    """
    if untrained:
        if source is not None or config is None:
            raise ConfigError("an untrained model is built from a config, not read from a file")
        cfg = _config(config, overrides)
        classes = load_dataset(cfg).num_train_pids
        seed_all(cfg["seed"])  # the new head's initialisation, as training starts it
        model: nn.Module = build_model_from_config(cfg, classes)
        info: dict[str, Any] = {}
    else:
        if source is None:
            raise ConfigError("give a model file (a checkpoint, .safetensors, .onnx or OpenVINO)")
        path = Path(source).expanduser()
        model, stored, info = _read(path)
        if config is not None:
            cfg = _config(config, overrides)
            if cfg["model"]["name"] != model.model_name:
                what = f"{model.kind} model" if hasattr(model, "kind") else "checkpoint"
                raise CheckpointError(
                    f"{what} {path} holds model {model.model_name!r} but config {config} is for "
                    f"{cfg['model']['name']!r}"
                )
        else:
            try:
                load_config(None, **stored)
            except ConfigError as exc:
                raise ConfigError(f"the config stored in {path} does not load: {exc}") from None
            cfg = load_config(None, overrides, **stored)
        info["model_file"] = str(path.resolve())
    if vectors and ranks_sequences(model):
        model.rank_with = cfg["model"]["options"]["rank_with"] = "feature"
        model.model_options = {**model.model_options, "rank_with": "feature"}
        print(
            f"note: {model.model_name} ranks with its own matching distance of feature "
            "sequences, which a gallery index, a tracker or an exported graph cannot run: its "
            "feature vector is used (rank_with: feature)",
            file=sys.stderr,
        )
    model.config = cfg
    model.eval()
    source_info = {
        **info,
        "model": model.model_name,
        "feature_dim": int(getattr(model, "feature_dim", 0)),
        "height": cfg["data"]["height"],
        "width": cfg["data"]["width"],
    }
    return FeatureExtractor(
        model, cfg, device=device, batch_size=batch_size, workers=workers, source=source_info
    )


def _config(config: str | Path | dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    if isinstance(config, dict):
        return load_config(None, overrides, **stored_config(config))
    return load_config(config, overrides)


def _read(path: Path) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """``(model, stored config, facts)`` of a model file."""
    if path.suffix in (".onnx", ".xml", ".bin") or path.is_dir():
        exported = OnnxModel(path) if path.suffix == ".onnx" else OpenVinoModel(path)
        stored = stored_config(exported.config)
        h, w = exported.input_size
        stored.setdefault("data", {}).update({"height": h, "width": w})
        return exported, stored, {}
    ckpt = read_safetensors(path) if path.suffix == ".safetensors" else read_checkpoint(path)
    meta = checkpoint_meta(ckpt, path)
    name, classes = meta["model"], int(meta["num_classes"])
    model = build_model(name, classes, "none", **meta.get("options", {}))
    try:
        missing, unexpected = model.load_state_dict(model_state_dict(ckpt), strict=False)
    except RuntimeError as exc:  # weights of the right names but other shapes
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), "")
        raise CheckpointError(f"checkpoint {path} does not fit model {name!r}: {detail}") from None
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise CheckpointError(
            f"checkpoint {path} does not fit model {name!r}: {len(missing)} missing and "
            f"{len(unexpected)} unexpected weights (first: {first})"
        )
    model.eval()
    stored = stored_config(ckpt.get("hyper_parameters", {}).get("config"))
    return model, stored, {"epoch": ckpt.get("epoch")}
