"""``attnreid viz ranks`` and ``attnreid viz cmc``: pictures of retrieval results.

Both read query / gallery features from ``attnreid extract`` files (``--features F.npz``) or
extract them with checkpoints (``--checkpoint C``, on the dataset of the checkpoint's config,
or of ``-c CONFIG`` and ``KEY=VALUE`` overrides).

    attnreid viz ranks --features f.npz --num-queries 6 --top 10 -o ranks.png
    attnreid viz cmc --checkpoint a.ckpt --checkpoint b.ckpt --label A --label B -o cmc.png
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnreid.errors import ConfigError


@dataclass
class _Source:
    label: str
    query: Any  # FeatureSet
    gallery: Any
    metric: str
    normalize: bool
    mode: str
    model: Any = None


def _source_args(p: argparse.ArgumentParser, repeat: bool) -> None:
    if repeat:  # any mix of files and checkpoints, one curve each
        g: Any = p
        more = " (repeatable)"
    else:
        g, more = p.add_mutually_exclusive_group(required=True), ""
    action = "append" if repeat else "store"
    g.add_argument("--features", action=action, help=f"a .npz of attnreid extract{more}")
    g.add_argument("--checkpoint", action=action, help=f"a checkpoint of attnreid train{more}")
    p.add_argument("--config", "-c", help="dataset / eval config for --checkpoint (a preset)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.add_argument(
        "--metric",
        choices=("euclidean", "cosine"),
        default=None,
        help="distance (default: the checkpoint's eval.metric; euclidean for files)",
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
        choices=("auto", "market", "cuhk03"),
        default="auto",
        help="protocol (default: the dataset's; market for feature files)",
    )
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument("--output", "-o", default="cmc.png", help="the PNG (default cmc.png)")
    p.set_defaults(func=cmd_viz_cmc)


def _from_checkpoint(args: argparse.Namespace, checkpoint: str) -> _Source:
    from attnreid.cli.commands import _load_for_eval
    from attnreid.engine.build import load_dataset
    from attnreid.evaluation.evaluate import extract_query_gallery
    from attnreid.utils.device import resolve_device

    ns = argparse.Namespace(checkpoint=checkpoint, config=args.config, overrides=args.overrides)
    model, cfg = _load_for_eval(ns)
    dataset = load_dataset(cfg)
    e = cfg["eval"]
    query, gallery = extract_query_gallery(model, dataset, cfg, resolve_device(cfg["device"]))
    mode = dataset.eval_mode if e["mode"] == "auto" else e["mode"]
    metric = args.metric or e["metric"]
    return _Source(checkpoint, query, gallery, metric, e["normalize"], mode, model)


def _from_file(args: argparse.Namespace, path: str) -> _Source:
    from attnreid.errors import AttnReidError
    from attnreid.evaluation.features import load_features

    sets = load_features(path)
    if "query" not in sets or "gallery" not in sets:
        raise AttnReidError(f"feature file {path} needs both query and gallery features")
    return _Source(
        path, sets["query"], sets["gallery"], args.metric or "euclidean", False, "market"
    )


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
    if args.num_queries < 1:
        raise ConfigError(f"--num-queries must be positive, got {args.num_queries}")
    n = min(args.num_queries, num_q)
    return sorted(set(np.linspace(0, num_q - 1, n).round().astype(int).tolist()))


def _distances(src: _Source, rows: list[int], rerank: bool) -> np.ndarray:
    """Distances of the chosen query rows to the whole gallery."""
    import torch.nn.functional as F

    from attnreid.evaluation.distance import compute_distance
    from attnreid.evaluation.rerank import FeatureDistances, has_own_distance, iter_rerank

    qf, gf = src.query.features, src.gallery.features
    model = src.model if has_own_distance(src.model, qf[:1], gf[:1]) else None
    if model is None and src.normalize:
        qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
    if rerank:  # the neighbourhoods involve every query: run it all, keep the chosen rows
        want = set(rows)
        picked = {}
        for start, block in iter_rerank(FeatureDistances(qf, gf, src.metric, model)):
            for r in range(start, start + block.shape[0]):
                if r in want:
                    picked[r] = block[r - start]
        return np.stack([picked[r] for r in rows])
    if model is not None:
        return model.compute_distance(qf[rows], gf).detach().cpu().numpy()
    return compute_distance(qf[rows], gf, metric=src.metric).numpy()


def cmd_viz_ranks(args: argparse.Namespace) -> int:
    from attnreid.viz.ranks import draw_ranks, ranked_rows

    if args.top < 1:
        raise ConfigError(f"--top must be positive, got {args.top}")
    height, width = _parse_cell(args.cell)
    src = _sources(args)[0]
    q, g = src.query, src.gallery
    idx = _query_indices(args, len(q))
    rows = ranked_rows(
        _distances(src, idx, args.rerank),
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
    from attnreid.evaluation.evaluate import score_features
    from attnreid.viz.cmc import draw_cmc

    sources = _sources(args)
    if args.label and len(args.label) != len(sources):
        raise ConfigError(f"{len(args.label)} --label for {len(sources)} curves")
    curves = {}
    for i, src in enumerate(sources):
        label = args.label[i] if args.label else src.label
        mode = src.mode if args.mode == "auto" else args.mode
        curves[label + (" (re-ranked)" if args.rerank else "")] = score_features(
            src.query,
            src.gallery,
            metric=src.metric,
            normalize=src.normalize,
            mode=mode,
            max_rank=args.max_rank,
            model=src.model,
            rerank=args.rerank,
        )
    path = draw_cmc(curves, args.output, max_rank=args.max_rank, title=args.title)
    summary = ", ".join(f"{k}: R1 {100 * r.rank(1):.1f}" for k, r in curves.items())
    print(f"wrote {path}: {summary}")
    return 0
