"""``attnreid serve``: the gallery search web page and JSON API (:mod:`attnreid.serve`).

attnreid serve --index gallery.index                     # the model the index was built with
attnreid serve --index gallery.index --fmr 1e-3 --port 8080   # verdicts at a false match rate
curl -F image=@query.jpg -F top=5 http://127.0.0.1:8080/api/search
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from attnreid.cli.options import add_model_args, add_verdict_args, load_index_model, verdicts
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
    add_verdict_args(p)
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="upload limit (default 8)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from attnreid.serve import GalleryStore, create_app

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    store = GalleryStore(args.index)
    extractor = load_index_model(args, store.index)
    judge = verdicts(args, store.index)
    missing = store.check_files()
    if missing:
        print(
            f"warning: {len(missing)} indexed images are missing, e.g. {missing[0]}",
            file=sys.stderr,
        )
    app = create_app(
        store,
        extractor,
        judge,
        max_upload=int(args.max_upload_mb * 1024 * 1024),
    )
    print(
        f"serving {args.index} ({len(store)} crops, model {extractor.model_name}; "
        f"{judge.describe}) on http://{args.host}:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
