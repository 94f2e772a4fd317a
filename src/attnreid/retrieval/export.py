"""Export of a re-ID model's test-time feature extractor: ONNX (float, INT8), for BoxMOT too.

``export_onnx(model, "model.onnx", height=256, width=128, config=cfg)`` writes the eval-mode
forward (``images (B, 3, H, W) float32 -> features (B, D) float32``: one vector per image, so
DuATM's networks are exported with their feature vector, ``rank_with: feature``, as a tracker
compares vectors and cannot run the pairwise matching distance) with a dynamic batch
dimension named ``batch``; ``H`` and ``W`` are fixed (some models, e.g. CCAN, build layers for
their input size). The model's description travels in the ONNX metadata (``attnreid.*`` keys:
model name, options, feature dimension, input size, input convention, in-graph flip, and the
training config), so that :func:`attnreid.load` opens it as an
:class:`~attnreid.models.exported.OnnxModel` (onnxruntime) that stands in for the PyTorch model
anywhere features are extracted, fed the way the file says.

**Input convention** (``input``, recorded as ``attnreid.input``): ``"imagenet"`` (default) is
what BoxMOT, torchreid's ``FeatureExtractor`` and most deployment code feed a re-ID model: RGB
divided by 255 and normalised with ImageNet's mean and std, float32 NCHW. ``"rgb255"`` takes
RGB values in ``[0, 255]`` (a caller only resizes). Either way the normalisation the model was
trained with (``data.normalization``) is folded into the graph's first operation when it
differs from the convention's, so the file drops into such a caller unchanged. The metadata's
``mean`` / ``std`` are the normalisation that turns images in ``[0, 1]`` into the graph's
input: what attnreid's own loaders apply to it.

**Flip averaging** (``flip``, recorded as ``attnreid.flip``): when the config evaluates with
flip averaging (``eval.flip``), the graph averages each image's features with its mirror
image's itself, so every consumer gets the features ``attnreid eval`` scored; attnreid's
extractor then does not flip again.

**BoxMOT's sidecar**: ``<file>.onnx.metadata.json`` next to the graph gives BoxMOT the input
size (:func:`write_boxmot_sidecar`), so the size is not guessed.

Exporter: the TorchScript-based exporter (``exporter="torchscript"``) exports every model of
this package in about a second; the ``torch.export``-based one (``"dynamo"``) takes several
seconds per model. ``"auto"`` (default) tries the first and falls back to the second.
After writing, the file is checked: onnxruntime and PyTorch features of a random batch are
compared and the largest difference returned.

**INT8** (:func:`quantize_onnx`, ``attnreid export onnx --int8``): post-training static
quantisation with onnxruntime's tools — weights int8 per channel, activations uint8, QDQ
format — with activation ranges measured on a few hundred training crops (the quantisation
crops), fed in the graph's input convention.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from attnreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, input_stats
from attnreid.errors import ModelError
from attnreid.models.backbones.osnet import OSNET_NAMES
from attnreid.models.exported import OnnxModel
from attnreid.utils.checks import one_of
from attnreid.utils.device import eval_mode
from attnreid.utils.distance import ranks_sequences
from attnreid.utils.io import atomic_write

__all__ = ["EXPORTERS", "export_onnx", "quantize_onnx"]

EXPORTERS = ("auto", "torchscript", "dynamo")
INPUT_NAME, OUTPUT_NAME = "images", "features"
OPSET = 18


def _export_bytes(model: nn.Module, x: Tensor, exporter: str, opset: int) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        common = dict(opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
        if exporter == "torchscript":
            buf = io.BytesIO()
            torch.onnx.export(
                model,
                (x,),
                buf,
                dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                **common,
            )
            return buf.getvalue()
        program = torch.onnx.export(
            model,
            (x,),
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1 << 16)},),
            verbose=False,
            **common,
        )
        return program.model_proto.SerializeToString()


#: The input conventions of an exported graph: ``imagenet`` = RGB / 255 normalised with ImageNet's
#: mean and std (torchreid's, BoxMOT's and most deployment code's), ``rgb255`` = RGB in [0, 255].
INPUTS = ("imagenet", "rgb255")


def graph_input_stats(convention: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` that turn RGB images in ``[0, 1]`` into a graph's input."""
    if one_of(convention, INPUTS, "ONNX input convention", ModelError) == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)


class _Graph(nn.Module):
    """What an exported graph computes: ``model(x * scale + shift)`` (the graph's input
    convention mapped onto the normalisation the model was trained with; nothing when they are
    the same), averaged with the mirror image's features when ``flip``."""

    def __init__(self, model: nn.Module, graph: tuple, own: tuple, flip: bool) -> None:
        super().__init__()
        self.model, self.flip = model, flip
        (gm, gs), (om, os_) = ((torch.tensor(v).view(1, 3, 1, 1) for v in p) for p in (graph, own))
        self.identity = bool(torch.allclose(gm, om) and torch.allclose(gs, os_))
        # model input = (x * gs + gm - om) / os_
        self.register_buffer("scale", (gs / os_).float())
        self.register_buffer("shift", ((gm - om) / os_).float())

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, 3, H, W) in the graph's input convention -> (B, D) features
        z = x if self.identity else x * self.scale + self.shift
        f = self.model(z)
        return (f + self.model(torch.flip(z, dims=[-1]))) / 2 if self.flip else f


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    height: int,
    width: int,
    config: dict[str, Any] | None = None,
    input: str = "imagenet",
    flip: bool | None = None,
    exporter: str = "auto",
    opset: int = OPSET,
    check: bool = True,
) -> float | None:
    """Write ``model``'s test-time forward to ``path`` (atomically) as ONNX, with BoxMOT's
    sidecar ``<path>.metadata.json``.

    ``input``: the graph's input convention (:data:`INPUTS`, see the module docstring); the
    model's own normalisation (``config``'s, else the model's) is folded into the graph.
    ``flip``: average each image's features with its mirror image's inside the graph (default:
    as ``config`` evaluates, ``eval.flip``). Returns the largest absolute difference between
    onnxruntime's and PyTorch's features on a random batch of 2 (``check=True``), else None.

    Raises:
        ModelError: the model cannot be exported (the message names the exporter's reason), or
            its test features are sequences only its own distance compares (DuATM's matching:
            load it with ``attnreid.load(..., vectors=True)`` for its feature vector).
    """
    import onnx

    if ranks_sequences(model):
        raise ModelError(
            f"model {getattr(model, 'model_name', type(model).__name__)!r} ranks with its own "
            "matching distance of feature sequences, which an exported graph's consumers "
            "cannot run: export its feature vector (rank_with: feature; attnreid.load(..., "
            "vectors=True) and attnreid export onnx do)"
        )

    one_of(exporter, EXPORTERS, "ONNX exporter", ModelError)
    graph_stats = graph_input_stats(input)
    own = input_stats(model, config) if config else (
        getattr(model, "input_mean", IMAGENET_MEAN), getattr(model, "input_std", IMAGENET_STD)
    )
    flip = bool(config["eval"]["flip"]) if flip is None and config else bool(flip)
    model = model.cpu()
    with eval_mode(model):
        wrapped = _Graph(model, graph_stats, own, flip).eval()
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in graph_stats)
        x = (torch.rand(2, 3, height, width) - mean) / std
        order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
        errors = []
        for name in order:
            try:
                proto = onnx.load_from_string(_export_bytes(wrapped, x, name, opset))
            except Exception as exc:  # exporters raise many types; report the first line
                errors.append(f"{name}: {str(exc).strip().splitlines()[0] if str(exc) else exc!r}")
                continue
            if [i.name for i in proto.graph.input] == [INPUT_NAME]:
                break
            errors.append(f"{name}: the exported graph does not read its input images")
        else:  # no exporter gave a usable graph
            label = getattr(model, "model_name", "") or type(model).__name__
            raise ModelError(f"model {label!r} could not be exported to ONNX ({'; '.join(errors)})")
        meta = _metadata(model, height, width, config, input, graph_stats, flip)
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        atomic_write(path, lambda tmp: onnx.save(proto, tmp))
        write_boxmot_sidecar(path, height, width, meta["attnreid.model"])
        if not check:
            return None
        with torch.no_grad():
            ref = wrapped(x).float().numpy()
        got = OnnxModel(path)(x).numpy()
        return float(np.abs(got - ref).max())


def _metadata(
    model: nn.Module,
    height: int,
    width: int,
    config: Any,
    convention: str,
    stats: tuple,
    flip: bool,
) -> dict[str, str]:
    meta = {
        "attnreid.model": getattr(model, "model_name", "") or type(model).__name__,
        "attnreid.options": json.dumps(getattr(model, "model_options", {}), default=str),
        "attnreid.num_classes": str(getattr(model, "num_classes", "")),
        "attnreid.feature_dim": str(getattr(model, "feature_dim", "")),
        "attnreid.input_size": json.dumps([height, width]),
        # the normalisation that turns RGB images in [0, 1] into the graph's input
        "attnreid.mean": json.dumps(list(stats[0])),
        "attnreid.std": json.dumps(list(stats[1])),
        "attnreid.input": json.dumps(convention),
        "attnreid.flip": json.dumps(flip),  # flip averaging inside the graph
    }
    if config is not None:
        meta["attnreid.config"] = json.dumps(
            {k: v for k, v in config.items() if not k.startswith("_")}, default=str
        )
    return meta


def write_boxmot_sidecar(path: str | Path, height: int, width: int, model_name: str = "") -> Path:
    """BoxMOT's sidecar of an exported model, written atomically: ``<file>.metadata.json`` for a
    file, ``<folder>/manifest.json`` for an OpenVINO folder. BoxMOT takes the input size from its
    ``model_kwargs.img_size`` (schema version 1, which admits no other ``model_kwargs``), and the
    architecture from ``model_name``, which is only written for the networks BoxMOT knows by
    that name (OSNet); the other keys describe the file as BoxMOT's own exporter does."""
    path = Path(path)
    out = path / "manifest.json" if path.is_dir() else path.with_name(path.name + ".metadata.json")
    meta: dict[str, Any] = {
        **({"model_name": model_name} if model_name in OSNET_NAMES else {}),
        "model_kwargs": {"img_size": [height, width]},
        "model_kwargs_schema_version": 1,
        "source": "attnreid",
        "format": "openvino" if path.is_dir() else "onnx",
        "input_name": INPUT_NAME,
        "input_shape": [1, 3, height, width],
        "dynamic_batch": True,
        "precision": "float32",
    }
    atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    return out


def quantize_onnx(
    src: str | Path,
    dst: str | Path,
    batches: Any,
    *,
    per_channel: bool = True,
) -> Path:
    """Write an INT8 copy of the exported model ``src`` to ``dst`` (atomically): onnxruntime's
    post-training static quantisation (QDQ format, int8 per-channel weights, uint8 activations,
    min-max calibration), its activation ranges measured on ``batches`` (an iterable of
    ``(B, 3, H, W)`` float32 arrays of RGB values in ``[0, 255]``, the graph's input). The
    metadata of ``src`` is kept.

    Raises:
        ModelError: onnxruntime cannot quantise the graph (the message says why).
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    meta = onnx.load(str(src), load_external_data=False).metadata_props

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.it, None)
            return None if batch is None else {INPUT_NAME: np.asarray(batch, np.float32)}

    with tempfile.TemporaryDirectory() as tmp:
        prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        try:
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        except Exception as exc:  # onnxruntime's tools raise many types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise ModelError(f"cannot quantise {src} to INT8: {first}") from None
        proto = onnx.load(str(out))
        del proto.metadata_props[:]
        proto.metadata_props.extend(meta)
        entry = proto.metadata_props.add()
        entry.key, entry.value = "attnreid.precision", json.dumps("int8")
        atomic_write(dst, lambda t: onnx.save(proto, t))
    return Path(dst)
