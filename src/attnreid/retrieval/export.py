"""ONNX export of a re-ID model's test-time feature extractor (INT8 too).

``export_onnx(model, "model.onnx", height=256, width=128)`` writes the eval-mode forward
(``images (B, 3, H, W) float32 -> features (B, D) float32``) with a dynamic batch dimension;
``H`` and ``W`` are fixed (some models, e.g. CCAN, build layers for their input size). The
model's description travels in the ONNX metadata (``attnreid.*`` keys: model name, options,
feature dimension, input size, normalisation, and the training config when known), so that
:func:`attnreid.load` opens it as an :class:`~attnreid.models.exported.OnnxModel` (onnxruntime)
that stands in for the PyTorch model anywhere features are extracted. Flip averaging is not
baked into the graph; the extractor runs the model on the mirrored batch as for PyTorch.

Exporter: the TorchScript-based exporter (``exporter="torchscript"``) exports every model of
this package in about a second; the ``torch.export``-based one (``"dynamo"``) takes several
seconds per model. ``"auto"`` (default) tries the first and falls back to the second.
After writing, the file is checked: onnxruntime and PyTorch features of a random batch are
compared and the largest difference returned.

**Input.** The graph takes RGB values in ``[0, 255]`` (float32, ``(B, 3, H, W)``, resized to
the model's input size): the model's input normalisation, ``(x / 255 - mean) / std``, is the
graph's first operation, so a caller (a tracker in C++, a browser, ...) only resizes. The
metadata's ``mean`` / ``std`` are therefore ``0`` / ``1/255``: the normalisation that turns
images in ``[0, 1]`` into the graph's input, which is what the library's loaders apply.

**INT8** (:func:`quantize_onnx`, ``attnreid export onnx --int8``): post-training static
quantisation with onnxruntime's tools — weights int8 per channel, activations uint8, QDQ
format — with activation ranges measured on a few hundred training crops (the quantisation
crops).
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

from attnreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from attnreid.errors import ModelError
from attnreid.models.exported import OnnxModel
from attnreid.utils.checks import one_of
from attnreid.utils.device import eval_mode
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


class _Rgb255(nn.Module):
    """``model((x / 255 - mean) / std)``: a model that takes RGB values in ``[0, 255]``."""

    def __init__(self, model: nn.Module, mean: Any, std: Any) -> None:
        super().__init__()
        self.model = model
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t))
        self.register_buffer(
            "shift", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) / std_t
        )

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, 3, H, W) in [0, 255] -> the model's features
        return self.model(x * self.scale - self.shift)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    height: int,
    width: int,
    config: dict[str, Any] | None = None,
    exporter: str = "auto",
    opset: int = OPSET,
    check: bool = True,
) -> float | None:
    """Write ``model``'s eval-mode forward to ``path`` (atomically) as ONNX.

    The graph takes RGB values in ``[0, 255]`` (the normalisation is inside, see the module
    docstring). Returns the largest absolute difference between onnxruntime's and PyTorch's
    features on a random batch of 2 (``check=True``), else None.

    Raises:
        ModelError: the model cannot be exported (the message names the exporter's reason).
    """
    import onnx

    one_of(exporter, EXPORTERS, "ONNX exporter", ModelError)
    model = model.cpu()
    with eval_mode(model):
        mean = getattr(model, "input_mean", IMAGENET_MEAN)
        std = getattr(model, "input_std", IMAGENET_STD)
        wrapped = _Rgb255(model, mean, std).eval()
        x = torch.rand(2, 3, height, width) * 255
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
        for key, value in _metadata(model, height, width, config).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        atomic_write(path, lambda tmp: onnx.save(proto, tmp))
        if not check:
            return None
        with torch.no_grad():
            ref = wrapped(x).float().numpy()
        got = OnnxModel(path)(x).numpy()
        return float(np.abs(got - ref).max())


def _metadata(model: nn.Module, height: int, width: int, config: Any) -> dict[str, str]:
    meta = {
        "attnreid.model": getattr(model, "model_name", "") or type(model).__name__,
        "attnreid.options": json.dumps(getattr(model, "model_options", {}), default=str),
        "attnreid.num_classes": str(getattr(model, "num_classes", "")),
        "attnreid.feature_dim": str(getattr(model, "feature_dim", "")),
        "attnreid.input_size": json.dumps([height, width]),
        # the graph normalises inside: images in [0, 1] become its 0-255 input this way
        "attnreid.mean": json.dumps([0.0, 0.0, 0.0]),
        "attnreid.std": json.dumps([1.0 / 255] * 3),
        "attnreid.input": json.dumps("RGB 0-255, normalisation inside the graph"),
    }
    if config is not None:
        meta["attnreid.config"] = json.dumps(
            {k: v for k, v in config.items() if not k.startswith("_")}, default=str
        )
    return meta


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
