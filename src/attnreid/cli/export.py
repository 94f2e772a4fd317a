"""``attnreid export onnx``: the test-time feature extractor as ONNX (float or INT8).

attnreid export onnx --checkpoint C -o model.onnx
attnreid export onnx --checkpoint C -o model_int8.onnx --int8 --quantisation-crops 256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from attnreid.cli.options import add_model_args, load_model
from attnreid.utils.checks import positive_int


def register(sub: Any) -> None:
    e = sub.add_parser("export", help="export a trained model (ONNX)")
    esub = e.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    o = esub.add_parser(
        "onnx",
        help="the test-time feature extractor as ONNX (dynamic batch)",
        description="Write the eval-mode forward of a checkpoint's model (RGB images in 0-255 "
        "-> features; the normalisation is inside the graph; dynamic batch, the config's input "
        "size) as ONNX, then check onnxruntime against PyTorch on a random batch. --int8: "
        "post-training static quantisation, its activation ranges measured on training crops "
        "of the config's dataset (KEY=VALUE overrides, e.g. data.root=..., point at it).",
    )
    add_model_args(o, ("checkpoint",), config=None)
    o.add_argument("--output", "-o", required=True, help="the .onnx file to write")
    o.add_argument(
        "--exporter",
        choices=("auto", "torchscript", "dynamo"),
        default="auto",
        help="torch exporter (default: torchscript, falling back to dynamo)",
    )
    o.add_argument("--no-check", action="store_true", help="skip the onnxruntime check")
    o.add_argument("--int8", action="store_true", help="quantise to INT8 (onnxruntime)")
    o.add_argument(
        "--quantisation-crops",
        type=int,
        default=256,
        help="--int8: training crops that set the activation ranges (default 256)",
    )
    o.add_argument(
        "--calibration-crops",
        type=int,
        default=None,
        help="deprecated alias of --quantisation-crops (removed in the next release)",
    )
    o.set_defaults(func=cmd_export_onnx)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    import tempfile

    from attnreid.retrieval.export import export_onnx, quantize_onnx

    crops = args.quantisation_crops
    if args.calibration_crops is not None:
        print("warning: --calibration-crops is now --quantisation-crops", file=sys.stderr)
        crops = args.calibration_crops
    if args.int8:
        positive_int(crops, "--quantisation-crops")
    extractor = load_model(args)
    model, cfg = extractor.model, extractor.config
    h, w = extractor.size
    out = Path(args.output)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx" if args.int8 else out
        diff = export_onnx(
            model,
            fp32,
            height=h,
            width=w,
            config=cfg,
            exporter=args.exporter,
            check=not args.no_check,
        )
        if args.int8:
            quantize_onnx(fp32, out, _quantisation_batches(cfg, h, w, crops))
    what = "float graph" if args.int8 else "onnxruntime"
    check = "" if diff is None else f"; {what} vs PyTorch: max |difference| {diff:.2e}"
    kind = "INT8 " if args.int8 else ""
    print(
        f"wrote {out}: {kind}model {model.model_name}, input (batch, 3, {h}x{w}) RGB 0-255{check}"
    )
    return 0


def _quantisation_batches(cfg: dict[str, Any], height: int, width: int, count: int) -> Any:
    """Batches of ``count`` training crops (a fixed random sample) as the exported graph takes
    them: resized to its input size, RGB values in [0, 255]."""
    import numpy as np

    from attnreid.data import build_test_loader, build_transforms
    from attnreid.engine.build import load_dataset

    train = load_dataset(cfg).train
    pick = np.random.default_rng(0).permutation(len(train))[:count]
    raw = build_transforms(height, width, train=False, mean=(0.0,) * 3, std=(1 / 255,) * 3)
    loader = build_test_loader([train[i] for i in sorted(pick)], raw, batch_size=32, workers=0)
    return (batch["image"].numpy() for batch in loader)
