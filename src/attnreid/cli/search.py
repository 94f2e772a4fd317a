"""``attnreid search``: the gallery images of an index nearest to query images.

attnreid search --index gallery.index --image query.jpg --top 10 [--json] [--png strip.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from attnreid.cli.options import add_model_args, add_verdict_args, load_index_model, verdicts
from attnreid.utils.checks import positive_int


def register(sub: Any) -> None:
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
    add_verdict_args(s)
    s.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    from attnreid.retrieval import GalleryIndex
    from attnreid.retrieval.gallery import parse_crop_name

    positive_int(args.top, "--top")
    index = GalleryIndex.load(args.index)
    extractor = load_index_model(args, index, workers=0)
    judge = verdicts(args, index)
    results = index.search(extractor.extract(args.image).features, args.top)
    for hits in results:
        for h in hits:
            h.verdict = judge(h.distance) if judge else None
    if args.json:
        out = [
            {"query": q, "hits": [h.as_dict() for h in hits]}
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
                verdict = f"{h.verdict:<9} " if judge else ""
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
