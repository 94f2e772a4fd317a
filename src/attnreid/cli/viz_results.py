"""``attnreid viz ranks`` and ``attnreid viz cmc``: pictures of retrieval results.

Both read query / gallery features from ``attnreid extract`` files (``--features F.npz``) or
extract them with checkpoints (``--checkpoint C``, on the dataset of the checkpoint's config,
or of ``-c CONFIG`` and ``KEY=VALUE`` overrides), and rank them with the evaluation's
:class:`~attnreid.evaluation.scoring.Scorer` (a checkpoint's ``eval`` settings; the library
defaults for files).

    attnreid viz ranks --features f.npz --num-queries 6 --top 10 -o ranks.png
    attnreid viz cmc --checkpoint a.ckpt --checkpoint b.ckpt --label A --label B -o cmc.png
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnreid.cli.options import add_model_args, load_model
from attnreid.errors import AttnReidError, ConfigError
from attnreid.utils.checks import positive_int


@dataclass
class _Source:
    label: str
    query: Any  # FeatureSet
    gallery: Any
    scorer: Any  # Scorer
    mode: str


def _source_args(p: argparse.ArgumentParser, repeat: bool) -> None:
    # with repeat: any mix of files and checkpoints, one curve each
    add_model_args(p, ("features", "checkpoint"), repeat=repeat)
    p.add_argument(
        "--metric",
        default=None,
        help="distance, as eval.metric (default: the checkpoint's; euclidean for files)",
    )
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")


def register(vsub: Any) -> None:
    p = vsub.add_parser(
        "ranks",
        help="queries and their top-k gallery images, framed green/red (PNG)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _source_args(p, repeat=False)
    p.add_argument("--queries", default=None, help="query indices, e.g. 0,5,17")
    p.add_argument(
        "--num-queries",
        type=int,
        default=6,
        help="without --queries: this many queries evenly spread (default 6)",
    )
    p.add_argument("--top", type=int, default=10, help="gallery images per query (default 10)")
    p.add_argument(
        "--keep-junk",
        action="store_true",
        help="also show gallery images of the query's identity and camera",
    )
    p.add_argument("--cell", default="128x64", help="image cell HEIGHTxWIDTH (default 128x64)")
    p.add_argument("--output", "-o", default="ranks.png", help="the PNG (default ranks.png)")
    p.set_defaults(func=cmd_viz_ranks)

    p = vsub.add_parser(
        "cmc",
        help="CMC curves of one or more feature files or checkpoints (PNG)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _source_args(p, repeat=True)
    p.add_argument(
        "--label",
        action="append",
        default=[],
        help="curve labels (repeatable), in order: feature files, then checkpoints",
    )
    p.add_argument("--max-rank", type=int, default=20, help="last rank drawn (default 20)")
    p.add_argument(
        "--mode",
        default="auto",
        help="protocol, as eval.mode (default: the dataset's; market for feature files)",
    )
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument("--output", "-o", default="cmc.png", help="the PNG (default cmc.png)")
    p.set_defaults(func=cmd_viz_cmc)


def _scorer(args: argparse.Namespace, model: Any, eval_cfg: dict[str, Any]) -> Any:
    from attnreid.evaluation.scoring import Scorer

    max_rank = getattr(args, "max_rank", None)
    return Scorer.from_config(
        model, eval_cfg, metric=args.metric, rerank=args.rerank, max_rank=max_rank
    )


def _from_checkpoint(args: argparse.Namespace, checkpoint: str) -> _Source:
    from attnreid.engine.build import load_dataset

    extractor = load_model(args, checkpoint)
    e = extractor.config["eval"]
    scorer = _scorer(args, extractor.model, e)  # checks --metric before extracting features
    dataset = load_dataset(extractor.config)
    query, gallery = (extractor.extract(dataset.split(s)) for s in ("query", "gallery"))
    mode = dataset.eval_mode if e["mode"] == "auto" else e["mode"]
    return _Source(checkpoint, query, gallery, scorer, mode)


def _from_file(args: argparse.Namespace, path: str) -> _Source:
    from attnreid.config import DEFAULTS
    from attnreid.evaluation.features import load_features

    sets = load_features(path)
    if "query" not in sets or "gallery" not in sets:
        raise AttnReidError(f"feature file {path} needs both query and gallery features")
    scorer = _scorer(args, None, DEFAULTS["eval"])
    return _Source(path, sets["query"], sets["gallery"], scorer, "market")


def _sources(args: argparse.Namespace) -> list[_Source]:
    files = args.features if isinstance(args.features, list) else [args.features]
    ckpts = args.checkpoint if isinstance(args.checkpoint, list) else [args.checkpoint]
    out = [_from_file(args, f) for f in files if f]
    out += [_from_checkpoint(args, c) for c in ckpts if c]
    if not out:
        raise ConfigError("give --features FILE.npz or --checkpoint CKPT")
    return out


def _parse_cell(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--cell must be HEIGHTxWIDTH, e.g. 128x64, got {text!r}") from None
    return h, w


def _query_indices(args: argparse.Namespace, num_q: int) -> list[int]:
    if args.queries:
        try:
            idx = [int(v) for v in args.queries.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(
                f"--queries must be indices like 0,5,17, got {args.queries!r}"
            ) from None
        bad = [i for i in idx if not 0 <= i < num_q]
        if bad or not idx:
            raise ConfigError(
                f"--queries: indices must lie in [0, {num_q - 1}], got {args.queries}"
            )
        return idx
    n = min(positive_int(args.num_queries, "--num-queries"), num_q)
    return sorted(set(np.linspace(0, num_q - 1, n).round().astype(int).tolist()))


def cmd_viz_ranks(args: argparse.Namespace) -> int:
    from attnreid.viz.ranks import draw_ranks, ranked_rows

    positive_int(args.top, "--top")
    height, width = _parse_cell(args.cell)
    src = _sources(args)[0]
    q, g = src.query, src.gallery
    idx = _query_indices(args, len(q))
    rows = ranked_rows(
        src.scorer.distances(q, g, idx),
        q.paths,
        q.pids,
        q.camids,
        g.paths,
        g.pids,
        g.camids,
        query_indices=idx,
        top_k=args.top,
        skip_junk=not args.keep_junk,
    )
    path = draw_ranks(rows, args.output, height=height, width=width)
    right = sum(int(items[0].pid == qi.pid) for qi, items in rows if items)
    print(f"wrote {path}: {len(rows)} queries x top {args.top} ({right} with a rank-1 match)")
    return 0


def cmd_viz_cmc(args: argparse.Namespace) -> int:
    from attnreid.viz.cmc import draw_cmc

    sources = _sources(args)
    if args.label and len(args.label) != len(sources):
        raise ConfigError(f"{len(args.label)} --label for {len(sources)} curves")
    curves = {}
    for i, src in enumerate(sources):
        label = args.label[i] if args.label else src.label
        mode = src.mode if args.mode == "auto" else args.mode
        curves[label + (" (re-ranked)" if args.rerank else "")] = src.scorer.score(
            src.query, src.gallery, mode
        )
    path = draw_cmc(curves, args.output, max_rank=args.max_rank, title=args.title)
    summary = ", ".join(f"{k}: R1 {100 * r.rank(1):.1f}" for k, r in curves.items())
    print(f"wrote {path}: {summary}")
    return 0
