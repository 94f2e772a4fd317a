"""Deployment engines side by side: PyTorch, onnxruntime FP32 / INT8, OpenVINO FP32 / INT8.

    python benchmarks/bench_deploy.py [--models osnet resnet50] [--seconds 6]

For each model, the same exported graph (``attnreid export``'s ImageNet input convention, no
flip inside, so one forward per image everywhere) is run by every engine on the same crops, one
run: images per second at batch 1 and at batch 32 (random input; the median of timed windows of
``--seconds`` / 3 each, after a warm-up), and rank-1 / mAP on CUHK01 split 0 (972 queries x 972
gallery, no flip averaging) with the features of that engine. INT8 variants: onnxruntime's
static quantisation in its two formats (QDQ, the default of ``export onnx --int8``, and
QOperator), each per channel, and OpenVINO's NNCF (its default mixed preset), all with
activation ranges measured on the same 256 training crops.

Models: ``osnet`` is torchreid's OSNet x0.25 trained on MSMT17 (``../shared/weights``), at
256x128, evaluated zero-shot; ``resnet50`` is the BNNeck baseline on ResNet-50 at 256x128 with
random weights (no ResNet-50 weights can be had on this machine), so its rows give the speed
and the feature agreement with FP32 (mean cosine), not a meaningful rank-1. The machine must be
otherwise idle. Prints a Markdown table; nothing is written.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import attnreid
from attnreid.engine.build import load_dataset
from attnreid.evaluation.scoring import Scorer
from attnreid.models.exported import OnnxModel, OpenVinoModel
from attnreid.retrieval.export import export_onnx

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "osnet": ("osnet_x0_25_cuhk01_cpu", []),
    "resnet50": ("baseline_cuhk01_cpu", ["model.options.backbone=resnet50",
                                         "model.pretrained=none", "data.height=256",
                                         "data.width=128"]),
}  # fmt: skip


def images_per_second(model: torch.nn.Module, x: torch.Tensor, seconds: float) -> float:
    """Median images / s over three windows of ``seconds / 3``, after a warm-up."""
    with torch.no_grad():
        for _ in range(3):
            model(x)
        rates = []
        for _ in range(3):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / 3:
                model(x)
                n += len(x)
            rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def quantisation_batches(extractor: Any, count: int = 256) -> list[np.ndarray]:
    """``count`` training crops (a fixed sample) in the graph's ImageNet convention."""
    from attnreid.data import build_test_loader, build_transforms

    train = load_dataset(extractor.config).train
    pick = np.random.default_rng(0).permutation(len(train))[:count]
    tf = build_transforms(*extractor.size, train=False)  # ImageNet mean / std
    loader = build_test_loader([train[i] for i in sorted(pick)], tf, batch_size=32, workers=0)
    return [b["image"].numpy() for b in loader]


def engines(extractor: Any, folder: Path) -> dict[str, torch.nn.Module]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from attnreid.retrieval.export_openvino import export_openvino

    h, w = extractor.size
    fp32 = folder / "fp32.onnx"
    export_onnx(extractor.model, fp32, height=h, width=w, config=extractor.config, flip=False)
    batches = quantisation_batches(extractor)
    out: dict[str, torch.nn.Module] = {"PyTorch": extractor.model.eval()}
    out["onnxruntime FP32"] = OnnxModel(fp32)
    prepared = folder / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    for fmt in (QuantFormat.QDQ, QuantFormat.QOperator):

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.it = iter(batches)

            def get_next(self) -> dict[str, np.ndarray] | None:
                b = next(self.it, None)
                return None if b is None else {"images": b}

        q = folder / f"int8_{fmt.name}.onnx"
        quantize_static(str(prepared), str(q), Reader(), quant_format=fmt, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
        import onnx

        proto, src = onnx.load(str(q)), onnx.load(str(fp32), load_external_data=False)
        proto.metadata_props.extend(src.metadata_props)
        onnx.save(proto, str(q))
        out[f"onnxruntime INT8 ({fmt.name})"] = OnnxModel(q)
    out["OpenVINO FP32"] = OpenVinoModel(export_openvino(fp32, folder / "ov"))
    out["OpenVINO INT8 (NNCF)"] = OpenVinoModel(export_openvino(fp32, folder / "ovq", batches))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=list(MODELS))
    p.add_argument("--seconds", type=float, default=6.0)
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print("| model | engine | img/s batch 1 | img/s batch 32 | vs ORT FP32 (b32) | R1 | mAP | "
          "cosine to FP32 |")  # fmt: skip
    print("|---" * 8 + "|")
    for name in args.models:
        preset, overrides = MODELS[name]
        base = attnreid.load(config=preset, untrained=True, overrides=["eval.flip=false",
                             "device=cpu", "data.workers=0", *overrides])  # fmt: skip
        dataset = load_dataset(base.config)
        with tempfile.TemporaryDirectory() as tmp:
            models = engines(base, Path(tmp))
            h, w = base.size
            ref = None
            rows = []
            for engine, model in models.items():
                ext = attnreid.evaluation.FeatureExtractor(model, base.config, device="cpu")
                q, g = (ext.extract(dataset.split(s)) for s in ("query", "gallery"))
                result = Scorer.from_config(model, base.config["eval"]).score(q, g, "market")
                feats = torch.cat([q.features, g.features])
                ref = feats if ref is None else ref
                cos = torch.nn.functional.cosine_similarity(feats, ref, dim=1).mean().item()
                b1 = images_per_second(model, torch.randn(1, 3, h, w), args.seconds)
                b32 = images_per_second(model, torch.randn(32, 3, h, w), args.seconds)
                rows.append((engine, b1, b32, result.rank(1), result.mAP, cos))
            ort = next(r[2] for r in rows if r[0] == "onnxruntime FP32")
            for engine, b1, b32, r1, m_ap, cos in rows:
                print(f"| {name} | {engine} | {b1:.0f} | {b32:.0f} | {b32 / ort:.2f}x | "
                      f"{100 * r1:.1f} | {100 * m_ap:.1f} | {cos:.4f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
