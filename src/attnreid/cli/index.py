"""``attnreid index build | info``: a searchable gallery index of a folder of person crops.

attnreid index build --checkpoint C --folder crops/ -o gallery.index
attnreid index build --checkpoint C --folder more_crops/ -o gallery.index --add
attnreid index build --onnx model.onnx --folder crops/ -o gallery.index
attnreid index info gallery.index
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from attnreid.cli.options import add_model_args, load_model


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
    b.add_argument("--nprobe", type=int, default=None,
                   help="ivf: cells searched (default: a sixteenth, at least 16)")  # fmt: skip
    b.add_argument("--hnsw-m", type=int, default=32, help="hnsw: links per node (default 32)")
    b.add_argument("--batch-size", type=int, default=None, help="images per forward pass")
    b.add_argument("--workers", type=int, default=None, help="data loading processes")
    b.set_defaults(func=cmd_index_build)
    i = isub.add_parser("info", help="print what an index holds")
    i.add_argument("index", help="an index written by attnreid index build")
    i.set_defaults(func=cmd_index_info)


def cmd_index_build(args: argparse.Namespace) -> int:
    import numpy as np

    from attnreid.evaluation.scoring import Scorer
    from attnreid.retrieval import GalleryIndex, scan_folder

    crops = scan_folder(args.folder, args.manifest, allow_outside_paths=args.allow_outside_paths)
    extractor = load_model(args, batch_size=args.batch_size, workers=args.workers, vectors=True)
    out = Path(args.output)
    index = None
    if args.add and out.exists():
        index = GalleryIndex.load(out)
        index.check_model(extractor, f"index {out}")
        known = set(index.paths)
        crops = crops.subset(np.array([p not in known for p in crops.paths], dtype=bool))
        if not len(crops):
            print(f"{out}: every image of {args.folder} is already indexed ({len(index)} images)")
            return 0
    feats = extractor.extract(crops.items()).features
    meta = {"pids": crops.pids, "camids": crops.camids, "times": crops.times}
    if index is None:
        index = GalleryIndex.build(
            feats,
            crops.paths,
            metric=Scorer.from_config(extractor.model, extractor.config["eval"]).index_metric,
            kind=args.kind,
            info={**extractor.source, **_calibration(args)},
            nlist=args.nlist,
            nprobe=args.nprobe,
            hnsw_m=args.hnsw_m,
            **meta,
        )
        index.save(out)
    else:  # appended to the file, durably; a server running on it picks the rows up
        index.add(feats, crops.paths, **meta)
    print(
        f"wrote {out}: {len(index)} images ({len(crops)} added), {index.kind} index, "
        f"{index.metric} metric, dimension {index.dim}, model {extractor.model_name}"
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
