"""Benchmark of evaluation in query blocks at MSMT17 scale (large galleries).

Run: ``python benchmarks/bench_blocked_eval.py`` (``--help`` for options; about 2 minutes on 2
cores, peak memory about 1.5 GB).

Data: MSMT17's test split sizes -- 11,659 queries and 82,161 gallery images of 3,060 identities
seen by 15 cameras -- with random 2,048-d float32 features with structure (identity centre +
camera offset + per-image noise, ``--noise``). The whole query x gallery distance matrix would
be 3.8 GB in float32; :class:`attnreid.evaluation.scoring.Scorer` (what evaluation runs)
streams query blocks and never holds it.

Reported: the wall time of ``Scorer().score`` (distances + CMC / mAP / mINP) and the peak
resident memory of the process during it (``/proc/self/status`` VmHWM, reset before the call),
in total and above what the process held before (the features themselves take
``N x D x 4`` bytes = 768 MB). ``--check`` first verifies on a slice that the blocked result
equals the full-matrix path (``evaluate_rank`` on the whole matrix). ``--rerank`` adds
k-reciprocal re-ranking (much longer: it computes the (Q+G) x (Q+G) distances twice).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_metrics import machine, reset_peak_rss, rss_mb

from attnreid.evaluation.features import FeatureSet
from attnreid.evaluation.metrics import evaluate_rank
from attnreid.evaluation.scoring import Scorer
from attnreid.utils.distance import compute_distance

NUM_IDS, NUM_CAMS, NUM_QUERY, NUM_GALLERY = 3060, 15, 11659, 82161


def msmt_like(scale: float, dim: int, noise: float, seed: int) -> tuple[FeatureSet, FeatureSet]:
    """Query and gallery feature sets with MSMT17's sizes times ``scale``."""
    rng = np.random.default_rng(seed)
    num_ids = max(2, int(NUM_IDS * scale))
    nq, ng = max(2, int(NUM_QUERY * scale)), max(2, int(NUM_GALLERY * scale))
    q_pids = rng.integers(1, num_ids + 1, nq)
    g_pids = rng.integers(1, num_ids + 1, ng)
    q_cams, g_cams = rng.integers(0, NUM_CAMS, nq), rng.integers(0, NUM_CAMS, ng)
    centres = rng.standard_normal((num_ids + 1, dim), dtype=np.float32)
    offsets = 0.5 * rng.standard_normal((NUM_CAMS, dim), dtype=np.float32)

    def feats(pids: np.ndarray, cams: np.ndarray) -> torch.Tensor:
        out = torch.empty((pids.size, dim), dtype=torch.float32)
        for s in range(0, pids.size, 8192):
            p, c = pids[s : s + 8192], cams[s : s + 8192]
            block = centres[p] + offsets[c]
            block += noise * rng.standard_normal(block.shape, dtype=np.float32)
            out[s : s + 8192] = torch.from_numpy(block)
        return out

    def paths(prefix: str, n: int) -> list[str]:
        return [f"{prefix}{i}.jpg" for i in range(n)]

    return (
        FeatureSet(feats(q_pids, q_cams), q_pids, q_cams, paths("q", nq)),
        FeatureSet(feats(g_pids, g_cams), g_pids, g_cams, paths("g", ng)),
    )


def check(dim: int, noise: float, seed: int) -> None:
    """Blocked == full matrix on a slice (both protocols)."""
    q, g = msmt_like(0.05, dim, noise, seed + 1)
    for mode in ("market", "cuhk03"):
        full = evaluate_rank(
            compute_distance(q.features, g.features).numpy(), q.pids, g.pids, q.camids,
            g.camids, mode=mode,
        )  # fmt: skip
        blocked = Scorer(block_elems=len(g) * 64).score(q, g, mode)  # 64 queries a block
        same = (
            np.array_equal(full.cmc, blocked.cmc)
            and full.mAP == blocked.mAP
            and full.mINP == blocked.mINP
        )
        print(f"check ({len(q)} x {len(g)}, {mode}): blocked == full matrix: {same}")
        if not same:
            raise SystemExit("blocked evaluation differs from the full-matrix path")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of MSMT17's sizes")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--noise", type=float, default=3.0, help="per-image noise (std)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="blocked == full on a slice first")
    parser.add_argument("--rerank", action="store_true", help="also time re-ranking (long)")
    args = parser.parse_args()
    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    if args.check:
        check(args.dim, args.noise, args.seed)

    rss_start, _ = rss_mb()
    t0 = time.perf_counter()
    q, g = msmt_like(args.scale, args.dim, args.noise, args.seed)
    rss_feats, _ = rss_mb()
    print(
        f"data: {len(q)} queries x {len(g)} gallery, {args.dim}-d float32 features "
        f"({(len(q) + len(g)) * args.dim * 4 / 2**20:.0f} MB; made in "
        f"{time.perf_counter() - t0:.1f} s); full distance matrix would be "
        f"{len(q) * len(g) * 4 / 2**30:.2f} GB"
    )
    runs = [("blocked", False)] + ([("blocked + re-ranking", True)] if args.rerank else [])
    rows = []
    for label, rerank in runs:
        exact = reset_peak_rss()
        t0 = time.perf_counter()
        result = Scorer(rerank=rerank).score(q, g)
        seconds = time.perf_counter() - t0
        _, peak = rss_mb()
        note = "" if exact else " (process peak: /proc/self/clear_refs unavailable)"
        print(
            f"{label}: {seconds:.1f} s; peak RSS {peak / 1024:.2f} GB in total, "
            f"+{peak - rss_feats:.0f} MB above the features{note}; rank1 "
            f"{100 * result.rank(1):.1f}, mAP {100 * result.mAP:.1f}, mINP {100 * result.mINP:.1f}"
        )
        rows.append((label, seconds, peak, peak - rss_feats))
    print(f"(RSS at start {rss_start:.0f} MB, with the features {rss_feats:.0f} MB)")
    print("\nMarkdown rows:")
    print("| evaluation | queries x gallery | time | peak RSS (total) | above the features |")
    print("|---|---|---|---|---|")
    for label, seconds, peak, above in rows:
        print(
            f"| {label} | {len(q):,} x {len(g):,} | {seconds:.1f} s | {peak / 1024:.2f} GB "
            f"| +{above:.0f} MB |"
        )


if __name__ == "__main__":
    main()
