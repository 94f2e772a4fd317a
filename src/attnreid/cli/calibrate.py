"""``attnreid calibrate``: match thresholds at chosen false match rates, from a labelled set.

attnreid calibrate --checkpoint C                        # thresholds on the config's test split
attnreid calibrate --checkpoint C data.dataset=custom data.root=my_labelled_crops/
attnreid calibrate --checkpoint C --index gallery.index  # also store them in an index
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from attnreid.cli.options import add_model_args, load_model
from attnreid.errors import ConfigError


def register(sub: Any) -> None:
    c = sub.add_parser(
        "calibrate",
        help="match thresholds at chosen false match rates, from a labelled test set",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(c)
    c.add_argument(
        "--fmr",
        type=float,
        nargs="+",
        default=[1e-2, 1e-3, 1e-4],
        help="false match rates (default 1e-2 1e-3 1e-4)",
    )
    c.add_argument("--output", "-o", help="default: <model file>.calibration.json")
    c.add_argument("--index", help="also store the thresholds in this gallery index")
    c.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from attnreid.retrieval import GalleryIndex
    from attnreid.retrieval.calibration import SUFFIX, calibrate
    from attnreid.utils.io import atomic_write_text

    result = calibrate(load_model(args, vectors=True), args.fmr)
    result["source"] = str(Path(args.checkpoint or args.onnx).resolve())
    out = Path(args.output or str(args.checkpoint or args.onnx) + SUFFIX)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    if args.index:
        index = GalleryIndex.load(args.index)
        if index.metric != result["metric"]:
            raise ConfigError(
                f"index {args.index} holds {index.metric} distances, the calibration "
                f"{result['metric']} ones: build the index with the same model"
            )
        index.set_info("calibration", result)  # in the file: a running server picks it up
    print(
        f"{result['dataset']}: {result['num_genuine']:,} genuine and "
        f"{result['num_impostor']:,} impostor pairs ({result['metric']} distance)"
    )
    for fmr, tpr in result["tpr"].items():
        t = result["thresholds"].get(fmr)
        where = f"distance <= {t:.6g}" if t is not None else "too few impostor pairs"
        print(f"  FMR {fmr}: match at {where}, TPR {100 * tpr:.1f}%")
    print(f"wrote {out}" + (f" and stored it in {args.index}" if args.index else ""))
    return 0
