"""``attnreid serve``: the gallery search web page and JSON API (:mod:`attnreid.serve`).

attnreid serve --index gallery.index                     # http://127.0.0.1:8080, this machine
attnreid serve --index gallery.index --fmr 1e-3 --port 8080   # verdicts at a false match rate
ATTNREID_TOKEN=... attnreid serve --index g.index --host 0.0.0.0   # colleagues: writes need it
attnreid serve --index g.index --host 0.0.0.0 --read-only          # search only
curl -F image=@query.jpg -F top=5 http://127.0.0.1:8080/api/search

Writing (adding crops) needs the token when one is set (``Authorization: Bearer <token>``).
Without a token the server only writes when it listens on a loopback address; on any other
address it refuses to start unless ``--read-only``. Put it behind a TLS reverse proxy to reach
it from other machines (README: "Deploying the search service").

One CPU thread runs the network by default (``--threads 1``): the forwards of concurrent
searches are batched in one thread, and the other cores decode uploads and answer requests.
More threads made OSNet's forward slower here, not faster, once it runs outside the thread
that loaded the model (as a server's must): two 256x128 images took 24 ms on one thread and
72-80 ms on two on this 2-core machine (28 ms on two when no other thread had run torch
first; our reading: OpenMP's fork and join in each of its many small layers, whose workers
wait by sleeping once two thread teams exist). ``benchmarks/bench_serve.py`` measures both.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from attnreid.cli.options import add_model_args, add_verdict_args, load_index_model, verdicts
from attnreid.errors import ConfigError
from attnreid.utils.checks import positive_int


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="a web page and JSON API to search a gallery index",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--index", required=True, help="an index written by attnreid index build")
    add_model_args(p, required=False, config=None, overrides=False)  # default: the index's
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free)")
    add_verdict_args(p)
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="upload limit (default 8)")
    p.add_argument("--token", default=os.environ.get("ATTNREID_TOKEN"),
                   help="the token writes need (default: $ATTNREID_TOKEN)")  # fmt: skip
    p.add_argument("--read-only", action="store_true", help="refuse every write")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a Host name the server answers besides its own (repeatable)")  # fmt: skip
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web origin allowed to call the API (repeatable)")  # fmt: skip
    p.add_argument("--max-batch", type=int, default=8, help="forwards batched (default 8)")
    p.add_argument("--batch-wait-ms", type=float, default=2.0,
                   help="how long a forward waits to batch with others (default 2)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads of the network (default 1)")  # fmt: skip
    p.add_argument("--max-pending", type=int, default=16,
                   help="searches / additions in progress before 503 (default 16)")  # fmt: skip
    p.set_defaults(func=cmd_serve)


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` for uvicorn. IPPROTO_TCP is named so that asyncio
    sets TCP_NODELAY on every connection (it skips a socket of protocol 0): otherwise a
    keep-alive answer's body waits for the client's delayed ACK of its headers, 40 ms a
    request (measured: GET /api/info 44 ms instead of 4)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from attnreid.serve import GalleryStore, create_app
    from attnreid.serve.guard import is_loopback

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    if not is_loopback(args.host) and args.token is None and not args.read_only:
        raise ConfigError(
            f"--host {args.host} opens the search service to the network: set a token for "
            "writes (--token or ATTNREID_TOKEN) or serve it --read-only"
        )
    if args.token is not None and len(args.token) < 16:
        raise ConfigError("--token must be at least 16 characters (e.g. openssl rand -hex 16)")
    positive_int(args.threads, "--threads")
    torch.set_num_threads(args.threads)  # before the model runs anything
    store = GalleryStore(args.index)
    extractor = load_index_model(args, store.index)
    judge = verdicts(args, store.index)
    missing = store.check_files()
    if missing:
        print(f"warning: {len(missing)} indexed images are missing, e.g. {missing[0]}",
              file=sys.stderr)  # fmt: skip
    if store.removed_orphans:
        print(f"note: removed {store.removed_orphans} crop images no index row named "
              "(an interrupted addition)", file=sys.stderr)  # fmt: skip
    app = create_app(
        store,
        extractor,
        judge,
        max_upload=int(args.max_upload_mb * 1024 * 1024),
        token=args.token,
        read_only=args.read_only,
        bind_host=args.host,
        allowed_hosts=tuple(args.allow_host),
        cors_origins=tuple(args.cors_origin),
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        max_pending=args.max_pending,
    )
    sock = listening_socket(args.host, args.port)
    port = sock.getsockname()[1]  # the one picked for --port 0
    writes = "read-only" if args.read_only else "writes need the token" if args.token else (
        "writes from this machine")  # fmt: skip
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {args.index} ({len(store)} crops, model {extractor.model_name}; "
          f"{judge.describe}; {writes}) on http://{host}:{port}",
          file=sys.stderr, flush=True)  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0
