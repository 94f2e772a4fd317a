"""``attnreid calibrate`` (match thresholds) and ``attnreid serve`` (the gallery search web page
and JSON API, :mod:`attnreid.serve`).

attnreid calibrate --checkpoint C                        # thresholds on the config's test split
attnreid calibrate --checkpoint C data.dataset=custom data.root=my_labelled_crops/
attnreid serve --index gallery.index                     # the model the index was built with
attnreid serve --index gallery.index --fmr 1e-3 --port 8080   # verdicts at a false match rate
curl -F image=@query.jpg -F top=5 http://127.0.0.1:8080/api/search
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from attnreid.cli.model_args import add_model_args, load_index_model, load_model
from attnreid.errors import ConfigError


def verdict_args(p: argparse.ArgumentParser) -> None:
    """The options that turn distances into match / no match (``search``, ``serve``)."""
    v = p.add_mutually_exclusive_group()
    v.add_argument("--fmr", type=float, default=1e-3, help="false match rate of 'match'")
    v.add_argument("--max-distance", type=float, help="'match' at or below this distance")
    p.add_argument(
        "--calibration",
        help="thresholds written by attnreid calibrate (default: those stored in the index)",
    )


def verdicts(args: argparse.Namespace, index: Any) -> Any:
    from attnreid.retrieval.calibration import Verdicts, load_thresholds

    return Verdicts(load_thresholds(args.calibration, index), args.fmr, args.max_distance)


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

    p = sub.add_parser(
        "serve",
        help="a local web page and JSON API to search a gallery index",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--index", required=True, help="an index written by attnreid index build")
    add_model_args(p, required=False, config=None, overrides=False)  # default: the index's
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free)")
    verdict_args(p)
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="upload limit (default 8)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from attnreid.retrieval.extractor import FeatureExtractor
    from attnreid.serve import GalleryStore, create_app

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    store = GalleryStore(args.index)
    model, cfg = load_index_model(args, store.index)
    judge = verdicts(args, store.index)
    missing = store.check_files()
    if missing:
        print(
            f"warning: {len(missing)} indexed images are missing, e.g. {missing[0]}",
            file=sys.stderr,
        )
    app = create_app(
        store,
        FeatureExtractor(model, cfg),
        judge,
        max_upload=int(args.max_upload_mb * 1024 * 1024),
    )
    print(
        f"serving {args.index} ({len(store)} crops, model {model.model_name}; "
        f"{judge.describe}) on http://{args.host}:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from attnreid.retrieval import GalleryIndex
    from attnreid.retrieval.calibration import SUFFIX, calibrate
    from attnreid.utils.io import atomic_write_text

    model, cfg = load_model(args)
    result = calibrate(model, cfg, args.fmr)
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
        index.info["calibration"] = result
        index.save(args.index)
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
