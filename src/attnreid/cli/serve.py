"""``attnreid serve``: the gallery search web page and JSON API (:mod:`attnreid.serve`).

attnreid serve --index gallery.index                        # the model the index was built with
attnreid serve --index gallery.index --fmr 1e-3 --port 8080   # verdicts at a false match rate
curl -F image=@query.jpg -F top=5 http://127.0.0.1:8080/api/search
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from attnreid.cli.model_args import add_model_args, load_index_model
from attnreid.errors import ConfigError


def register(sub: Any) -> None:
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
    v = p.add_mutually_exclusive_group()
    v.add_argument("--fmr", type=float, default=1e-3, help="false match rate of 'match'")
    v.add_argument("--max-distance", type=float, help="'match' at or below this distance")
    p.add_argument(
        "--calibration",
        help="thresholds written by attnreid calibrate (default: those stored in the index)",
    )
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="upload limit (default 8)")
    p.set_defaults(func=cmd_serve)


def load_thresholds(path: str | Path | None, index_info: dict[str, Any]) -> dict[str, float]:
    """Calibrated thresholds ``{fmr: distance}``: from ``path``, else the index's."""
    if path is None:
        return dict(index_info.get("calibration", {}).get("thresholds", {}))
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return {str(k): float(v) for k, v in data["thresholds"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(
            f"calibration file {path} is not readable thresholds (a JSON file written by "
            "attnreid calibrate)"
        ) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from attnreid.retrieval.extractor import FeatureExtractor
    from attnreid.serve import GalleryStore, Verdicts, create_app

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    store = GalleryStore(args.index)
    model, cfg = load_index_model(args, store.index)
    thresholds = load_thresholds(args.calibration, store.index.info)
    verdicts = Verdicts(thresholds, args.fmr, args.max_distance)
    missing = store.check_files()
    if missing:
        print(
            f"warning: {len(missing)} indexed images are missing, e.g. {missing[0]}",
            file=sys.stderr,
        )
    app = create_app(
        store,
        FeatureExtractor(model, cfg),
        verdicts,
        max_upload=int(args.max_upload_mb * 1024 * 1024),
    )
    print(
        f"serving {args.index} ({len(store)} crops, model {model.model_name}; "
        f"{verdicts.describe}) on http://{args.host}:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
