"""Exported models run by an inference engine, usable like the PyTorch network.

:class:`OpenVinoModel` runs a model of ``attnreid export openvino`` with OpenVINO (an optional
extra). :class:`OnnxModel` runs a graph written by ``attnreid export onnx``
(:mod:`attnreid.retrieval.export`) with onnxruntime: an ``nn.Module`` whose forward takes the
preprocessed batch, so it stands in for the network wherever features are extracted
(:class:`~attnreid.evaluation.extractor.FeatureExtractor`). The model's description travels in
the ONNX metadata (``attnreid.*`` keys: model name, options, feature dimension, input size,
normalisation, and the training config when known); :func:`attnreid.load` opens such a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from attnreid.errors import AttnReidError, ModelError, wrong_file

__all__ = ["ONNX_FILE", "ExportedModel", "OnnxModel", "OpenVinoModel", "read_onnx_metadata"]

#: What ``--onnx`` expects, as the message for another kind of file says it.
ONNX_FILE = "a readable ONNX model (a .onnx file written by attnreid export onnx)"


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The ``attnreid.*`` metadata of an exported model, decoded (keys without the prefix)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise AttnReidError(f"ONNX model {path} does not exist")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # onnx raises DecodeError and others
        proto = None
    if proto is None or not proto.HasField("graph"):  # bytes may parse as an empty model
        raise AttnReidError(wrong_file(path, "ONNX model", ONNX_FILE))
    out: dict[str, Any] = {}
    for entry in proto.metadata_props:
        if entry.key.startswith("attnreid."):
            key = entry.key.removeprefix("attnreid.")
            try:
                out[key] = json.loads(entry.value) if key != "model" else entry.value
            except json.JSONDecodeError:
                out[key] = entry.value
    if "model" not in out:
        raise AttnReidError(
            f"ONNX model {path} was not exported by attnreid (no attnreid metadata)"
        )
    return out


class ExportedModel(nn.Module):
    """What the exported models share: the description in their metadata (``model_name``,
    ``model_options``, ``feature_dim``, ``num_classes``, ``input_size``, the input's
    ``input_mean`` / ``input_std``, ``flips_inside``, the training ``config``) and a forward
    that checks the batch's shape and runs the engine on the CPU."""

    runs_on_cpu = True  # utils.device.model_device: the engines' CPU plug-ins
    fixed_input = True  # data.transforms.input_stats: fed as the file says, whatever the config
    kind = "exported"

    def _describe(self, path: Path, md: dict[str, Any], out_dim: Any) -> None:
        self.path, self.metadata = path, md
        self.model_name = str(md["model"])
        self.model_options = md.get("options", {})
        dim = md.get("feature_dim") or out_dim
        self.feature_dim = dim if isinstance(dim, int) else 0
        self.num_classes = int(md.get("num_classes") or 0)
        self.input_size = tuple(md.get("input_size", (None, None)))
        self.input_mean = tuple(md.get("mean", (0.485, 0.456, 0.406)))
        self.input_std = tuple(md.get("std", (0.229, 0.224, 0.225)))
        self.flips_inside = bool(md.get("flip", False))  # the graph averages with the mirror
        self.config: dict[str, Any] | None = md.get("config")

    def forward(self, x: Tensor) -> Tensor:
        h, w = self.input_size
        if x.dim() != 4 or (h is not None and tuple(x.shape[2:]) != (h, w)):
            raise ModelError(
                f"{self.kind} model {self.path.name} takes (B, 3, {h}, {w}) images, got "
                f"{tuple(x.shape)}"
            )
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(np.asarray(self._run(arr), dtype=np.float32))

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OnnxModel(ExportedModel):
    """An exported feature extractor run by onnxruntime, usable like the PyTorch model.

    ``forward(images (B, 3, H, W)) -> (B, D)`` float32 on the CPU; ``threads``: onnxruntime's
    intra-op threads (default: ``torch.get_num_threads()``, which follows
    ``OMP_NUM_THREADS``).
    """

    kind = "ONNX"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        path = Path(path)
        md = read_onnx_metadata(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            raise AttnReidError(f"onnxruntime cannot load {path}: {exc}") from None
        out_shape = self.session.get_outputs()[0].shape
        self._describe(path, md, out_shape[-1] if len(out_shape) > 1 else 0)
        self._input = self.session.get_inputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: x})[0]


def openvino_runtime() -> Any:
    """The ``openvino`` module, or one line on how to install it."""
    try:
        import openvino
    except ImportError:
        raise ModelError("OpenVINO models need OpenVINO: pip install attnreid[openvino]") from None
    return openvino


def openvino_xml(path: str | Path) -> Path:
    """The ``.xml`` of an OpenVINO model given as the file, its ``.bin`` or its folder."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.xml"))
        if len(found) != 1:
            raise AttnReidError(f"OpenVINO folder {path} must hold one .xml, it holds {len(found)}")
        return found[0]
    return path.with_suffix(".xml") if path.suffix == ".bin" else path


class OpenVinoModel(ExportedModel):
    """An export of ``attnreid export openvino`` run by OpenVINO's CPU plug-in (FP32 inference
    precision; INT8 where the model was quantised), usable like the PyTorch model."""

    kind = "OpenVINO"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        ov = openvino_runtime()
        xml = openvino_xml(path)
        if not xml.is_file():
            raise AttnReidError(f"OpenVINO model {xml} does not exist")
        core = ov.Core()
        try:
            model = core.read_model(str(xml))
        except Exception:  # OpenVINO raises RuntimeError and others for a bad file
            raise AttnReidError(
                f"{xml} is not a readable OpenVINO model (a folder of attnreid export openvino)"
            ) from None
        if not model.has_rt_info(["attnreid", "model"]):
            raise AttnReidError(f"OpenVINO model {xml} was not exported by attnreid")
        md = {
            key: json.loads(value.astype(str))
            for key, value in model.get_rt_info()["attnreid"].items()
        }
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
        }
        self.compiled = core.compile_model(model, "CPU", config)
        out = self.compiled.output(0).get_partial_shape()
        self._describe(xml, md, out[-1].get_length() if out[-1].is_static else 0)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.compiled(x)[0]
