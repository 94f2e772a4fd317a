"""A gallery of a million crops: build time, memory, search latency and recall per index kind.

    python benchmarks/bench_million.py [--size 1000000] [--dim 512] [--queries 200]
        [--kinds flat ivf hnsw] [--save DIR]

The features are **synthetic** (no million real crops exist here): ``size`` unit vectors of
``dim`` dimensions drawn around ``size / 10`` identity centres (ten sightings each, with the
spread re-ID features of one person show: :data:`NOISE`), with a camera (one of 24) and a time (the
item's position, as frames in order) each; the queries are further sightings of random
identities. For each kind of :class:`~attnreid.retrieval.GalleryIndex` (cosine metric, the
defaults of ``attnreid index build``, plus the ``nprobe`` / ``ef_search`` given) it prints,
measured here: build time, the process's resident memory after the build, search latency of
one query (p50 / p95 over ``--queries``; the index's own search, faiss and the filter, not
the network) without and with a filter (4 cameras of 24 and a time window of a fifth of the
gallery: about 3% of the items), and recall@10 against the exact (flat) ranking of the same
query and filter. ``--save DIR`` also writes each index file (``DIR/<kind>.index``) and
prints the time to write and to open it again, for ``bench_serve.py --index``.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from attnreid.retrieval import GalleryIndex


def _rss_gb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


#: Per-dimension noise around an identity's centre: two sightings of one identity then have a
#: cosine of 1 / (1 + 512 NOISE^2) = 0.52, as OSNet x0.25 (MSMT17) features of 800 CUHK01 crops
#: have once their mean feature is removed (measured here: 0.52 within an identity, 0.00
#: between identities).
NOISE = 0.0425


def synthetic(size: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``(gallery features, camids, times, query features)``, unit vectors."""
    rng = np.random.default_rng(seed)
    ids = size // 10
    centres = rng.standard_normal((ids, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    owner = np.repeat(np.arange(ids), 10)[:size]
    feats = np.empty((size, dim), np.float32)
    for s in range(0, size, 100_000):  # in blocks: bounded temporary memory
        e = min(size, s + 100_000)
        feats[s:e] = centres[owner[s:e]] + NOISE * rng.standard_normal((e - s, dim), np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    q_owner = rng.integers(0, ids, queries)
    q = centres[q_owner] + NOISE * rng.standard_normal((queries, dim), np.float32)
    cams = rng.integers(0, 24, size)
    return feats, cams, np.arange(size, dtype=np.float64), q / np.linalg.norm(q, axis=1)[:, None]


def latency(index: GalleryIndex, queries: np.ndarray, **filters: object) -> tuple[list, list]:
    """``(milliseconds per query, top-10 ids per query)``."""
    ms, ids = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, idx = index.search_arrays(q[None], 10, **filters)
        ms.append(1000 * (time.perf_counter() - t0))
        ids.append(idx[0])
    return ms, ids


def recall(got: list, exact: list) -> float:
    return float(np.mean([len(set(g) & set(e)) / max(1, len(e)) for g, e in zip(got, exact)]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--kinds", nargs="+", default=["flat", "ivf", "hnsw"])
    p.add_argument("--nprobe", type=int, default=None, help="ivf (default: the index's)")
    p.add_argument("--ef-search", type=int, default=128)
    p.add_argument("--save", help="also write each index to DIR/<kind>.index")
    args = p.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{args.size:,} synthetic {args.dim}-d features, {args.queries} queries")  # fmt: skip
    feats, cams, times, queries = synthetic(args.size, args.dim, args.queries)
    paths = [f"crop{i}.jpg" for i in range(args.size)]
    flt = {"cameras": [0, 5, 11, 17], "time_from": 0.4 * args.size, "time_to": 0.6 * args.size}
    exact: dict[str, list] = {}
    print("| kind | build s | RSS after build GB | search p50 / p95 ms | filtered p50 / p95 ms "
          "| recall@10 | filtered recall@10 |")  # fmt: skip
    print("|---" * 7 + "|")
    for kind in ["flat", *[k for k in args.kinds if k != "flat"]]:
        gc.collect()
        t0 = time.perf_counter()
        index = GalleryIndex.build(feats, paths, camids=cams, times=times, kind=kind,
                                   nprobe=args.nprobe, ef_search=args.ef_search)  # fmt: skip
        build = time.perf_counter() - t0
        rss = _rss_gb()
        plain, plain_ids = latency(index, queries)
        filtered, filtered_ids = latency(index, queries, **flt)
        if kind == "flat":
            exact = {"plain": plain_ids, "filtered": filtered_ids}
        q50 = lambda v: (statistics.median(v), statistics.quantiles(v, n=20)[18])  # noqa: E731
        (a, b), (c, d) = q50(plain), q50(filtered)
        print(f"| {kind} | {build:.0f} | {rss:.1f} | {a:.1f} / {b:.1f} | {c:.1f} / {d:.1f} | "
              f"{recall(plain_ids, exact['plain']):.3f} | "
              f"{recall(filtered_ids, exact['filtered']):.3f} |", flush=True)  # fmt: skip
        if args.save:
            path = Path(args.save) / f"{kind}.index"
            t0 = time.perf_counter()
            index.save(path)
            saved = time.perf_counter() - t0
            del index
            gc.collect()
            t0 = time.perf_counter()
            GalleryIndex.load(path)
            print(f"  {path}: written in {saved:.0f} s ({path.stat().st_size / 2**30:.1f} GB), "
                  f"opened in {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        else:
            del index
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS of the whole run: {peak:.1f} GB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
