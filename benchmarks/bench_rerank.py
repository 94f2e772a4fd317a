"""Benchmark of k-reciprocal re-ranking at Market-1501 scale: fast vs the literal algorithm.

Run: ``python benchmarks/bench_rerank.py`` (``--help`` for options; about 3 minutes on 2 cores).

Data: 3,368 queries and 15,913 gallery images (19,281 in all) with Market-1501's identity
structure (751 identities over 6 cameras, 2,798 distractors, 1,000 junk images; see
``bench_metrics.market_like_ids``) and random 2,048-d features with structure: each identity
has a random centre, each camera a random offset, each image its own noise (``--noise``), so
that retrieval is neither trivial nor hopeless and re-ranking has neighbourhoods to exploit.
The inputs of both versions are the three squared-euclidean matrices ``q_g, q_q, g_g`` (as
``attnreid.utils.distance.compute_distance`` gives them); ``k1 = 20, k2 = 6,
lambda = 0.3``.

* **fast**: :func:`attnreid.evaluation.rerank.re_ranking` on the full set; also
  :func:`~attnreid.evaluation.scoring.rerank_features` (from the features, distances computed in
  blocks, what ``attnreid eval --rerank`` runs).
* **literal**: the authors' algorithm (``tests/evaluation/rerank_reference.py``). It holds
  several ``N x N`` dense matrices and loops over images in Python, so by default it is
  measured on two subsets (``--literal-scales``, fractions of the full set with the same
  structure) and **extrapolated** to the full set with the exponent fitted to the two (time)
  and with ``N^2`` (memory, its dense matrices); ``--literal-scales 1`` measures it on the full
  set instead (about 7 GB and several minutes).

Every measurement runs in a fresh process (``spawn``) that first builds its inputs; the peak
memory is the rise of the process's peak RSS during the call above its RSS before the call
(``/proc/self/clear_refs``), so it counts what the algorithm allocates, not its inputs. The fast
and literal results are compared on the largest subset (max |difference| and mAP).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_metrics import machine, market_like_ids, reset_peak_rss, rss_mb

from attnreid.evaluation.metrics import evaluate_rank
from attnreid.evaluation.rerank import re_ranking
from attnreid.evaluation.scoring import rerank_features
from attnreid.utils.distance import compute_distance


def structured_features(
    q_pids: np.ndarray, g_pids: np.ndarray, q_cams: np.ndarray, g_cams: np.ndarray,
    dim: int, noise: float, seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Identity centre + camera offset + per-image noise (distractors / junk: own centre)."""
    rng = np.random.default_rng(seed + 3)
    pids = np.concatenate([q_pids, g_pids])
    cams = np.concatenate([q_cams, g_cams])
    centres = rng.standard_normal((int(pids.max()) + 1, dim), dtype=np.float32)
    offsets = 0.5 * rng.standard_normal((int(cams.max()) + 1, dim), dtype=np.float32)
    feats = np.empty((pids.size, dim), dtype=np.float32)
    for s in range(0, pids.size, 4096):
        p, c = pids[s : s + 4096], cams[s : s + 4096]
        own = rng.standard_normal((p.size, dim), dtype=np.float32)
        base = np.where((p > 0)[:, None], centres[np.maximum(p, 0)], own)
        feats[s : s + 4096] = (
            base + offsets[c] + noise * rng.standard_normal((p.size, dim), dtype=np.float32)
        )
    t = torch.from_numpy(feats)
    return t[: q_pids.size], t[q_pids.size :]


def subset(ids: tuple[np.ndarray, ...], scale: float, seed: int) -> tuple[np.ndarray, ...]:
    """A random fraction ``scale`` of the queries and of the gallery (same structure)."""
    if scale >= 1:
        return ids
    rng = np.random.default_rng(seed + 7)
    q_pids, g_pids, q_cams, g_cams = ids
    qi = np.sort(rng.choice(q_pids.size, max(2, int(q_pids.size * scale)), replace=False))
    gi = np.sort(rng.choice(g_pids.size, max(2, int(g_pids.size * scale)), replace=False))
    return q_pids[qi], g_pids[gi], q_cams[qi], g_cams[gi]


def _child(which: str, scale: float, args: dict[str, Any], out: Any) -> None:
    torch.set_num_threads(args["threads"])
    from tests.evaluation.rerank_reference import re_ranking_reference

    ids = subset(market_like_ids(args["seed"]), scale, args["seed"])
    qf, gf = structured_features(*ids, dim=args["dim"], noise=args["noise"], seed=args["seed"])
    if which == "features":
        fn: Any = lambda: rerank_features(qf, gf)  # noqa: E731
    else:
        mats = [compute_distance(a, b).numpy() for a, b in ((qf, gf), (qf, qf), (gf, gf))]
        algo = re_ranking if which == "fast" else re_ranking_reference
        fn = lambda: algo(*mats)  # noqa: E731
    rss0, _ = rss_mb()
    exact = reset_peak_rss()
    t0 = time.perf_counter()
    final = fn()
    seconds = time.perf_counter() - t0
    _, peak = rss_mb()
    before = evaluate_rank(compute_distance(qf, gf).numpy(), *ids)
    after = evaluate_rank(final, *ids)
    result = {
        "seconds": seconds,
        "peak_mb": peak - rss0,
        "exact_peak": exact,
        "n": int(qf.shape[0] + gf.shape[0]),
        "mAP_before": before.mAP,
        "mAP_after": after.mAP,
        "rank1_after": after.rank(1),
    }
    if args.get("save"):
        np.save(args["save"], final)
    out.put(result)


def run(which: str, scale: float, args: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(which, scale, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of Market-1501 size")
    parser.add_argument(
        "--literal-scales", default="0.125,0.25", help="fractions for the literal (1 = full set)"
    )
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--noise", type=float, default=3.0, help="per-image noise (std)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-features", action="store_true", help="skip rerank_features")
    args = parser.parse_args()
    common = {"dim": args.dim, "noise": args.noise, "threads": args.threads, "seed": args.seed}
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine().items()))

    fast = run("fast", args.scale, common)
    n_full = fast["n"]
    print(
        f"fast re_ranking (N = {n_full}): {fast['seconds']:.2f} s, peak +{fast['peak_mb']:.0f} MB;"
        f" mAP {100 * fast['mAP_before']:.1f} -> {100 * fast['mAP_after']:.1f} after re-ranking"
    )
    if not args.skip_features:
        feat = run("features", args.scale, common)
        print(
            f"fast rerank_features (distances in blocks, from {args.dim}-d features): "
            f"{feat['seconds']:.2f} s, peak +{feat['peak_mb']:.0f} MB"
        )

    scales = [float(s) * args.scale for s in args.literal_scales.split(",")]
    lits = []
    for i, s in enumerate(scales):
        tmp = Path(f"/tmp/bench_rerank_{i}")
        lit = run("literal", s, {**common, "save": f"{tmp}_lit.npy"})
        fst = run("fast", s, {**common, "save": f"{tmp}_fast.npy"})
        diff = float(np.abs(np.load(f"{tmp}_lit.npy") - np.load(f"{tmp}_fast.npy")).max())
        for f in (f"{tmp}_lit.npy", f"{tmp}_fast.npy"):
            Path(f).unlink()
        lits.append(lit)
        print(
            f"literal (N = {lit['n']}): {lit['seconds']:.2f} s, peak +{lit['peak_mb']:.0f} MB; "
            f"fast on the same: {fst['seconds']:.2f} s, peak +{fst['peak_mb']:.0f} MB; "
            f"max |fast - literal| = {diff:.1e}, mAP {100 * lit['mAP_after']:.3f} vs "
            f"{100 * fst['mAP_after']:.3f}"
        )
    if lits[-1]["n"] >= n_full:
        lit_t, lit_m, how = lits[-1]["seconds"], lits[-1]["peak_mb"], "measured"
    else:
        a, b = lits[0], lits[-1]
        expo = (
            math.log(b["seconds"] / a["seconds"]) / math.log(b["n"] / a["n"]) if a is not b else 2
        )
        lit_t = b["seconds"] * (n_full / b["n"]) ** expo
        lit_m = b["peak_mb"] * (n_full / b["n"]) ** 2
        how = f"extrapolated from N = {b['n']} (time ~ N^{expo:.2f}, memory ~ N^2)"
    print(
        f"literal at N = {n_full} ({how}): {lit_t:.0f} s, peak +{lit_m:.0f} MB\n"
        f"speed-up {lit_t / fast['seconds']:.0f}x, memory ratio "
        f"{fast['peak_mb'] / lit_m:.3f} (fast / literal)"
    )
    print("\nMarkdown rows:")
    print("| version | N | time | peak memory (above inputs) |")
    print("|---|---|---|---|")
    print(f"| fast `re_ranking` | {n_full} | {fast['seconds']:.1f} s | {fast['peak_mb']:.0f} MB |")
    if not args.skip_features:
        print(
            f"| fast `rerank_features` (incl. distances) | {n_full} | {feat['seconds']:.1f} s | "
            f"{feat['peak_mb']:.0f} MB |"
        )
    for lit in lits:
        row = f"| literal (measured) | {lit['n']} | {lit['seconds']:.1f} s |"
        print(f"{row} {lit['peak_mb']:.0f} MB |")
    if how != "measured":
        print(f"| literal ({how}) | {n_full} | {lit_t:.0f} s | {lit_m:.0f} MB |")


if __name__ == "__main__":
    main()
