"""Benchmark of CPU feature extraction: PyTorch eager vs the exported ONNX model in onnxruntime.

Run: ``python benchmarks/bench_export.py`` (``--help`` for options; about 3 minutes on 2 cores).

For each model (random weights, ``pretrained="none"``: speed does not depend on them) at the
given input size: export with :func:`attnreid.retrieval.export.export_onnx` (dynamic batch),
check that onnxruntime's features equal PyTorch's, then time batches of ``--batch`` random
images through the PyTorch model (eval mode, ``torch.no_grad``) and through onnxruntime
(:class:`~attnreid.models.exported.OnnxModel`, default graph optimisations), each with
``--threads`` threads, after ``--warmup`` untimed batches, for at least ``--seconds`` seconds;
images/s is ``batch x batches / time``. Prints the machine and a Markdown table.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_metrics import machine

from attnreid.models import build_model
from attnreid.models.exported import OnnxModel
from attnreid.models.registry import model_factory
from attnreid.retrieval.export import export_onnx


def images_per_second(fn, x: torch.Tensor, warmup: int, seconds: float) -> float:
    for _ in range(warmup):
        fn(x)
    n, t0 = 0, time.perf_counter()
    while True:
        fn(x)
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and n >= 3:
            return n * x.shape[0] / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,mobilenet_v2,sa_resnet50,sona_net,ccan,duatm")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per engine")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            options = {}
            if "input_size" in inspect.signature(model_factory(name)).parameters:
                options["input_size"] = [args.height, args.width]
            model = build_model(name, 751, "none", **options).eval()
            path = Path(tmp) / f"{name}.onnx"
            t0 = time.perf_counter()
            export_onnx(model, path, height=args.height, width=args.width, check=False)
            export_s = time.perf_counter() - t0
            ort_model = OnnxModel(path, threads=args.threads)
            x = torch.randn(args.batch, 3, args.height, args.width)
            with torch.no_grad():
                ref = model(x)
                diff = float((ort_model(x) - ref).abs().max() / max(1.0, float(ref.abs().max())))

                def torch_fn(b: torch.Tensor, m: torch.nn.Module = model) -> torch.Tensor:
                    return m(b)

                pt = images_per_second(torch_fn, x, args.warmup, args.seconds)
            ox = images_per_second(ort_model, x, args.warmup, args.seconds)
            print(
                f"{name}: PyTorch {pt:.1f} img/s, onnxruntime {ox:.1f} img/s ({ox / pt:.2f}x); "
                f"export {export_s:.1f} s, relative difference {diff:.1e}"
            )
            rows.append((name, pt, ox, diff))
            del model, ort_model
    print(
        f"\nMarkdown table ({args.height}x{args.width}, batch {args.batch}, "
        f"{args.threads} threads):"
    )
    print("| model | PyTorch img/s | onnxruntime img/s | speed-up | max rel. difference |")
    print("|---|---|---|---|---|")
    for name, pt, ox, diff in rows:
        print(f"| {name} | {pt:.1f} | {ox:.1f} | {ox / pt:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
