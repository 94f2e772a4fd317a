"""Exported models run by an inference engine, usable like the PyTorch network.

:class:`OnnxModel` runs a graph written by ``attnreid export onnx``
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

__all__ = ["ONNX_FILE", "OnnxModel", "read_onnx_metadata"]

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


class OnnxModel(nn.Module):
    """An exported feature extractor run by onnxruntime, usable like the PyTorch model.

    ``forward(images (B, 3, H, W)) -> (B, D)`` float32 on the CPU; ``input_mean``,
    ``input_std``, ``feature_dim``, ``model_name`` and ``config`` come from the metadata.
    ``threads``: onnxruntime's intra-op threads (default: ``torch.get_num_threads()``, which
    follows ``OMP_NUM_THREADS``).
    """

    runs_on_cpu = True  # utils.device.model_device: onnxruntime's CPU provider

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        self.path = Path(path)
        self.metadata = read_onnx_metadata(self.path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own exception types
            raise AttnReidError(f"onnxruntime cannot load {self.path}: {exc}") from None
        md = self.metadata
        self.model_name = str(md["model"])
        self.model_options = md.get("options", {})
        out_shape = self.session.get_outputs()[0].shape
        dim = md.get("feature_dim") or (out_shape[-1] if len(out_shape) > 1 else 0)
        self.feature_dim = dim if isinstance(dim, int) else 0
        self.num_classes = int(md.get("num_classes") or 0)
        self.input_size = tuple(md.get("input_size", (None, None)))
        self.input_mean = tuple(md.get("mean", (0.485, 0.456, 0.406)))
        self.input_std = tuple(md.get("std", (0.229, 0.224, 0.225)))
        self.config: dict[str, Any] | None = md.get("config")
        self._input = self.session.get_inputs()[0].name

    def forward(self, x: Tensor) -> Tensor:
        h, w = self.input_size
        if x.dim() != 4 or (h is not None and tuple(x.shape[2:]) != (h, w)):
            raise ModelError(
                f"ONNX model {self.path.name} takes (B, 3, {h}, {w}) images, got {tuple(x.shape)}"
            )
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self._input: arr})[0])
