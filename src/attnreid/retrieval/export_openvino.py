"""``attnreid export openvino``: an exported ONNX graph as an OpenVINO model, FP32 or INT8.

The ONNX graph of :func:`~attnreid.retrieval.export.export_onnx` (its input convention and
in-graph flip included) is converted by OpenVINO's ``convert_model`` and written as BoxMOT's
layout: a folder ``<stem>_openvino_model/`` holding ``<stem>.xml`` and ``<stem>.bin`` (FP32
weights: ``compress_to_fp16=False``), with ``manifest.json`` giving BoxMOT the input size. The
graph's ``attnreid.*`` metadata travels in the model's ``rt_info`` (under ``attnreid``), so that
:func:`attnreid.load` opens the folder (or its ``.xml``) as an
:class:`~attnreid.models.exported.OpenVinoModel` fed the way the file says.

**INT8**: post-training quantisation by NNCF (``nncf.quantize``, its default mixed preset:
symmetric int8 weights and activations where OpenVINO's CPU plugin runs them in int8), the
activation ranges measured on batches of training crops in the graph's input convention.

OpenVINO and NNCF are an optional extra: ``pip install attnreid[openvino]``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from attnreid.errors import ModelError
from attnreid.models.exported import openvino_runtime, read_onnx_metadata
from attnreid.retrieval.export import write_boxmot_sidecar

__all__ = ["export_openvino", "openvino_folder"]


def openvino_folder(path: str | Path) -> Path:
    """The folder an OpenVINO export is written to: ``path`` if it ends in ``_openvino_model``,
    else ``<path without suffix>_openvino_model`` (BoxMOT recognises the folder by that end)."""
    path = Path(path)
    return path if path.name.endswith("_openvino_model") else path.with_name(
        f"{path.stem}_openvino_model"
    )


def export_openvino(
    onnx_path: str | Path, out: str | Path, batches: Iterable[np.ndarray] | None = None
) -> Path:
    """Convert ``onnx_path`` into the OpenVINO folder for ``out`` (:func:`openvino_folder`),
    INT8 when calibration ``batches`` are given; written to a temporary folder and renamed, so
    a crash never leaves half a model. Returns the folder."""
    ov = openvino_runtime()
    meta = read_onnx_metadata(onnx_path)
    folder = openvino_folder(out)
    model = ov.convert_model(str(onnx_path))
    if batches is not None:
        try:
            import nncf
        except ImportError:
            raise ModelError("INT8 OpenVINO needs NNCF: pip install attnreid[openvino]") from None
        data = [np.asarray(b, np.float32) for b in batches]
        model = nncf.quantize(model, nncf.Dataset(data), subset_size=sum(len(b) for b in data))
        meta["precision"] = "int8"
    for key, value in meta.items():
        model.set_rt_info(json.dumps(value), ["attnreid", key])
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        stem = folder.name.removesuffix("_openvino_model")
        ov.save_model(model, str(tmp / f"{stem}.xml"), compress_to_fp16=False)
        height, width = meta["input_size"]
        write_boxmot_sidecar(tmp, height, width, str(meta.get("model", "")))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def describe(meta: dict[str, Any]) -> str:
    """One line on what an export holds (for the CLI)."""
    h, w = meta["input_size"]
    flip = ", flip-averaged inside" if meta.get("flip") else ""
    return f"model {meta['model']}, input (batch, 3, {h}x{w}) {meta.get('input', 'rgb255')}{flip}"
