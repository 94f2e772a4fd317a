"""``attnreid export onnx | openvino | torchreid``: a trained model for other tools.

attnreid export onnx --checkpoint C -o model.onnx                 # BoxMOT's input convention
attnreid export onnx --checkpoint C -o model_int8.onnx --int8 --quantisation-crops 256
attnreid export openvino --checkpoint C -o model_openvino_model [--int8]
attnreid export torchreid --checkpoint C -o osnet_x0_25_cuhk01.pt  # OSNet: torchreid, BoxMOT .pt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from attnreid.cli.options import add_model_args, load_model
from attnreid.utils.checks import positive_int

GRAPH = (
    "--input imagenet (default): the graph takes RGB / 255 normalised with ImageNet's mean and "
    "std, float32 NCHW, as BoxMOT and torchreid feed a re-ID model (rgb255: RGB in 0-255); the "
    "model's own normalisation is folded in. Flip averaging is inside the graph when the config "
    "evaluates with it (--no-flip: not). Dynamic batch, the config's input size; checked "
    "against PyTorch. --int8: post-training quantisation, its activation ranges measured on "
    "training crops of the config's dataset (KEY=VALUE overrides, e.g. data.root=..., point at "
    "it)."
)


def _graph_args(p: argparse.ArgumentParser, output: str) -> None:
    add_model_args(p, ("checkpoint",), config=None)
    p.add_argument("--output", "-o", required=True, help=output)
    p.add_argument("--input", choices=("imagenet", "rgb255"), default="imagenet",
                   help="the graph's input convention (default imagenet: BoxMOT's)")  # fmt: skip
    p.add_argument("--no-flip", action="store_true", help="no flip averaging in the graph")
    p.add_argument("--int8", action="store_true", help="quantise to INT8")
    p.add_argument(
        "--quantisation-crops",
        type=int,
        default=256,
        help="--int8: training crops that set the activation ranges (default 256)",
    )


def register(sub: Any) -> None:
    e = sub.add_parser("export", help="export a trained model (ONNX, OpenVINO, torchreid)")
    esub = e.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    o = esub.add_parser("onnx", help="the test-time feature extractor as ONNX", description=GRAPH)
    _graph_args(o, "the .onnx file to write (and BoxMOT's <file>.metadata.json)")
    o.add_argument(
        "--exporter",
        choices=("auto", "torchscript", "dynamo"),
        default="auto",
        help="torch exporter (default: torchscript, falling back to dynamo)",
    )
    o.add_argument("--no-check", action="store_true", help="skip the onnxruntime check")
    o.add_argument(
        "--calibration-crops",
        type=int,
        default=None,
        help="deprecated alias of --quantisation-crops (removed in the next release)",
    )
    o.set_defaults(func=cmd_export_onnx)
    v = esub.add_parser(
        "openvino",
        help="the test-time feature extractor as OpenVINO (pip install attnreid[openvino])",
        description=GRAPH + " INT8 by NNCF.",
    )
    _graph_args(v, "the folder to write (named *_openvino_model, as BoxMOT expects)")
    v.set_defaults(func=cmd_export_openvino)
    t = esub.add_parser(
        "torchreid",
        help="an OSNet model in torchreid's layout (.pt for torchreid and BoxMOT)",
        description="Write a plain OSNet re-ID model's weights with torchreid's keys (conv1 .. "
        "conv5, fc, classifier) under 'state_dict', with model_name, num_classes and img_size "
        "beside them: loadable strictly by torchreid's OSNet and by BoxMOT's PyTorch backend "
        "(name the file after the model, e.g. osnet_x0_25_cuhk01.pt). Neither flips the crops.",
    )
    add_model_args(t, ("checkpoint",), config=None)
    t.add_argument("--output", "-o", required=True, help="the .pt file to write")
    t.set_defaults(func=cmd_export_torchreid)


def _onnx(args: argparse.Namespace, out: Path, extractor: Any, check: bool) -> float | None:
    from attnreid.retrieval.export import export_onnx

    h, w = extractor.size
    flip = False if args.no_flip else None  # None: as the config evaluates
    return export_onnx(
        extractor.model,
        out,
        height=h,
        width=w,
        config=extractor.config,
        input=args.input,
        flip=flip,
        exporter=getattr(args, "exporter", "auto"),
        check=check,
    )


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from attnreid.models.exported import read_onnx_metadata
    from attnreid.retrieval.export import quantize_onnx
    from attnreid.retrieval.export_openvino import describe

    crops = args.quantisation_crops
    if args.calibration_crops is not None:
        print("warning: --calibration-crops is now --quantisation-crops", file=sys.stderr)
        crops = args.calibration_crops
    if args.int8:
        positive_int(crops, "--quantisation-crops")
    extractor = load_model(args, vectors=True)  # a graph gives one vector per image
    out = Path(args.output)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx" if args.int8 else out
        diff = _onnx(args, fp32, extractor, not args.no_check)
        if args.int8:
            quantize_onnx(fp32, out, _quantisation_batches(fp32, extractor.config, crops))
            _copy_sidecar(fp32, out)
    what = "float graph" if args.int8 else "onnxruntime"
    check = "" if diff is None else f"; {what} vs PyTorch: max |difference| {diff:.2e}"
    kind = "INT8 " if args.int8 else ""
    print(f"wrote {out}: {kind}{describe(read_onnx_metadata(out))}{check}")
    return 0


def cmd_export_openvino(args: argparse.Namespace) -> int:
    from attnreid.models.exported import OpenVinoModel, openvino_runtime
    from attnreid.retrieval.export_openvino import describe, export_openvino

    openvino_runtime()  # one line on how to install it, before anything is computed
    if args.int8:
        positive_int(args.quantisation_crops, "--quantisation-crops")
    extractor = load_model(args, vectors=True)  # a graph gives one vector per image
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "model.onnx"
        _onnx(args, onnx, extractor, check=False)
        batches = (
            _quantisation_batches(onnx, extractor.config, args.quantisation_crops)
            if args.int8
            else None
        )
        folder = export_openvino(onnx, args.output, batches)
    kind = "INT8 " if args.int8 else ""
    print(f"wrote {folder}: {kind}OpenVINO, {describe(OpenVinoModel(folder).metadata)}")
    return 0


def cmd_export_torchreid(args: argparse.Namespace) -> int:
    from attnreid.retrieval.export_torchreid import export_torchreid

    extractor = load_model(args)
    out = Path(args.output)
    info = export_torchreid(extractor.model, out, *extractor.size)
    name = info["model_name"]
    print(f"wrote {out}: {name} in torchreid's layout, {info['num_classes']} identities")
    if name not in out.name:
        print(
            f"note: older BoxMOT releases pick the network from the file name: name it "
            f"{name}_<tag>.pt",
            file=sys.stderr,
        )
    return 0


def _copy_sidecar(src: Path, dst: Path) -> None:
    from attnreid.utils.io import atomic_write

    side = src.with_name(src.name + ".metadata.json")
    data = side.read_bytes()
    atomic_write(dst.with_name(dst.name + ".metadata.json"), lambda t: Path(t).write_bytes(data))


def _quantisation_batches(graph: Path, cfg: dict[str, Any], count: int) -> Any:
    """Batches of ``count`` training crops (a fixed random sample) as the exported ``graph``
    takes them: its input size and input convention (the metadata's mean and std)."""
    import numpy as np

    from attnreid.data import build_test_loader, build_transforms
    from attnreid.engine.build import load_dataset
    from attnreid.models.exported import read_onnx_metadata

    meta = read_onnx_metadata(graph)
    height, width = meta["input_size"]
    train = load_dataset(cfg).train
    pick = np.random.default_rng(0).permutation(len(train))[:count]
    tf = build_transforms(height, width, train=False, mean=meta["mean"], std=meta["std"])
    loader = build_test_loader([train[i] for i in sorted(pick)], tf, batch_size=32, workers=0)
    return (batch["image"].numpy() for batch in loader)
