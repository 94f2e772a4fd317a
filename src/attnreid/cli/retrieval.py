"""``attnreid index build | info``, ``attnreid search``, ``attnreid export onnx``.

attnreid index build --checkpoint C --folder crops/ -o gallery.index
attnreid index build --checkpoint C --folder more_crops/ -o gallery.index --add
attnreid search --index gallery.index --image query.jpg --top 10 [--json] [--png strip.png]
attnreid export onnx --checkpoint C -o model.onnx
attnreid index build --onnx model.onnx --folder crops/ -o gallery.index
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from attnreid.cli.model_args import add_model_args, load_index_model, load_model
from attnreid.cli.serve import verdict_args, verdicts
from attnreid.errors import CheckpointError
from attnreid.utils.checks import positive_int


def register(sub: Any) -> None:
    p = sub.add_parser("index", help="build a searchable index of a folder of person crops")
    isub = p.add_subparsers(dest="index_command", metavar="WHAT", required=True)
    b = isub.add_parser(
        "build",
        help="extract the features of a folder of crops into a gallery index (faiss)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(b, config=None)
    b.add_argument("--folder", required=True, help="folder of images (searched recursively)")
    b.add_argument("--output", "-o", required=True, help="the index file to write")
    b.add_argument("--add", action="store_true", help="add to an existing index (new paths only)")
    b.add_argument("--manifest", help="CSV with path[,pid,camid,time] (paths relative to --folder)")
    b.add_argument(
        "--allow-outside-paths",
        action="store_true",
        help="accept manifest paths that are absolute or leave --folder (a trusted manifest)",
    )
    b.add_argument(
        "--kind",
        choices=("flat", "ivf", "hnsw"),
        default="flat",
        help="flat = exact (default); ivf / hnsw = approximate, for millions of crops",
    )
    b.add_argument("--nlist", type=int, default=None, help="ivf: cells (default 4 sqrt(N))")
    b.add_argument("--nprobe", type=int, default=16, help="ivf: cells searched (default 16)")
    b.add_argument("--hnsw-m", type=int, default=32, help="hnsw: links per node (default 32)")
    b.add_argument("--batch-size", type=int, default=None, help="images per forward pass")
    b.add_argument("--workers", type=int, default=None, help="data loading processes")
    b.set_defaults(func=cmd_index_build)
    i = isub.add_parser("info", help="print what an index holds")
    i.add_argument("index", help="an index written by attnreid index build")
    i.set_defaults(func=cmd_index_info)

    s = sub.add_parser(
        "search",
        help="find the gallery images nearest to query images in an index",
        description="Rank an index's gallery for each query image. The model is the one the "
        "index was built with, unless --checkpoint or --onnx names another of the same kind.",
    )
    s.add_argument("--index", required=True, help="an index written by attnreid index build")
    s.add_argument("--image", required=True, action="append", help="a query image (repeatable)")
    s.add_argument("--top", type=int, default=10, help="results per query (default 10)")
    s.add_argument("--json", action="store_true", help="print the results as JSON")
    s.add_argument("--png", help="also draw the query and its results in a PNG strip")
    add_model_args(s, required=False, config=None)
    verdict_args(s)
    s.set_defaults(func=cmd_search)

    e = sub.add_parser("export", help="export a trained model (ONNX)")
    esub = e.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    o = esub.add_parser(
        "onnx",
        help="the test-time feature extractor as ONNX (dynamic batch)",
        description="Write the eval-mode forward of a checkpoint's model (RGB images in 0-255 "
        "-> features; the normalisation is inside the graph; dynamic batch, the config's input "
        "size) as ONNX, then check onnxruntime against PyTorch on a random batch. --int8: "
        "post-training static quantisation calibrated on training crops of the config's "
        "dataset (KEY=VALUE overrides, e.g. data.root=..., point at it).",
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
        "--calibration-crops",
        type=int,
        default=256,
        help="--int8: training crops that calibrate the activation ranges (default 256)",
    )
    o.set_defaults(func=cmd_export_onnx)


def cmd_index_build(args: argparse.Namespace) -> int:
    import numpy as np

    from attnreid.evaluation.scoring import Scorer
    from attnreid.retrieval import GalleryIndex, extract_crops, model_source, scan_folder

    crops = scan_folder(args.folder, args.manifest, allow_outside_paths=args.allow_outside_paths)
    model, cfg = load_model(args)
    source = model_source(model, cfg, args.checkpoint, args.onnx)
    out = Path(args.output)
    index = None
    if args.add and out.exists():
        index = GalleryIndex.load(out)
        old = index.info.get("model")
        if old != source["model"] or index.dim != source["feature_dim"]:
            raise CheckpointError(
                f"index {out} holds features of model {old!r} (dimension {index.dim}); "
                f"{args.checkpoint or args.onnx} is model {source['model']!r} "
                f"(dimension {source['feature_dim']})"
            )
        known = set(index.paths)
        crops = crops.subset(np.array([p not in known for p in crops.paths], dtype=bool))
        if not len(crops):
            print(f"{out}: every image of {args.folder} is already indexed ({len(index)} images)")
            return 0
    feats = extract_crops(
        model,
        cfg,
        crops,
        batch_size=args.batch_size,
        workers=args.workers,
    )
    meta = {"pids": crops.pids, "camids": crops.camids, "times": crops.times}
    if index is None:
        index = GalleryIndex.build(
            feats,
            crops.paths,
            metric=Scorer.from_config(model, cfg["eval"]).index_metric,
            kind=args.kind,
            info={**source, **_calibration(args)},
            nlist=args.nlist,
            nprobe=args.nprobe,
            hnsw_m=args.hnsw_m,
            **meta,
        )
    else:
        index.add(feats, crops.paths, **meta)
    index.save(out)
    print(
        f"wrote {out}: {len(index)} images ({len(crops)} added), {index.kind} index, "
        f"{index.metric} metric, dimension {index.dim}, model {source['model']}"
    )
    return 0


def _calibration(args: argparse.Namespace) -> dict[str, Any]:
    """The thresholds ``attnreid calibrate`` wrote beside the model, for the index header."""
    from attnreid.retrieval.calibration import calibration_beside

    found = calibration_beside(args.checkpoint or args.onnx)
    return {"calibration": found} if found else {}


def cmd_index_info(args: argparse.Namespace) -> int:
    from attnreid.retrieval import GalleryIndex

    print(json.dumps(GalleryIndex.load(args.index).header(), indent=2))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from attnreid.retrieval import GalleryIndex, extract_crops
    from attnreid.retrieval.gallery import parse_crop_name

    positive_int(args.top, "--top")
    index = GalleryIndex.load(args.index)
    model, cfg = load_index_model(args, index)
    judge = verdicts(args, index)
    feats = extract_crops(model, cfg, args.image, workers=0)
    results = index.search(feats, args.top)
    if args.json:
        out = [
            {
                "query": q,
                "hits": [
                    {**h.as_dict(), **({"verdict": judge(h.distance)} if judge else {})}
                    for h in hits
                ],
            }
            for q, hits in zip(args.image, results)
        ]
        print(json.dumps(out, indent=2))
    else:
        for q, hits in zip(args.image, results):
            print(
                f"query {q}: {len(hits)} of {len(index)} gallery images ({index.metric}; "
                f"{judge.describe})"
            )
            print(
                f"{'rank':>4}  {'distance':>9}  {'pid':>5}  {'cam':>3}  "
                + ("verdict   " if judge else "")
                + "path"
            )
            for h in hits:
                cam = "?" if h.camid < 0 else str(h.camid + 1)
                pid = "?" if h.pid < 0 else str(h.pid)
                verdict = f"{judge(h.distance):<9} " if judge else ""
                print(f"{h.rank:>4}  {h.distance:>9.4f}  {pid:>5}  {cam:>3}  {verdict}{h.path}")
    if args.png:
        from attnreid.viz.ranks import RankedItem, draw_ranks

        rows = [
            (
                RankedItem(q, *parse_crop_name(q)[:2]),
                [RankedItem(h.path, h.pid, h.camid, h.distance) for h in hits],
            )
            for q, hits in zip(args.image, results)
        ]
        path = draw_ranks(rows, args.png)
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    import tempfile

    from attnreid.retrieval.export import export_onnx, quantize_onnx

    if args.int8:
        positive_int(args.calibration_crops, "--calibration-crops")
    model, cfg = load_model(args)
    h, w = cfg["data"]["height"], cfg["data"]["width"]
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
            quantize_onnx(fp32, out, _calibration_batches(cfg, args.calibration_crops))
    check = "" if diff is None else f"; onnxruntime vs PyTorch: max |difference| {diff:.2e}"
    kind = "INT8 " if args.int8 else ""
    print(
        f"wrote {out}: {kind}model {model.model_name}, input (batch, 3, {h}x{w}) RGB 0-255{check}"
    )
    return 0


def _calibration_batches(cfg: dict[str, Any], count: int) -> Any:
    """Batches of ``count`` training crops (a fixed random sample) as the exported graph takes
    them: resized to the config's input size, RGB values in [0, 255]."""
    import numpy as np

    from attnreid.engine.build import load_dataset
    from attnreid.evaluation.evaluate import test_loader_from_config

    train = load_dataset(cfg).train
    pick = np.random.default_rng(0).permutation(len(train))[:count]
    loader = test_loader_from_config(
        [train[i] for i in sorted(pick)], cfg, (0.0,) * 3, (1 / 255,) * 3, batch_size=32
    )
    return (batch["image"].numpy() for batch in loader)
