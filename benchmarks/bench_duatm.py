"""Benchmark of the DuATM query x gallery distance at Market-1501 scale.

Run: ``python benchmarks/bench_duatm.py`` (``--help`` for options).

Random unit-norm sequences of the real shapes: 3,368 queries and 15,913 gallery items of
``S = 32`` vectors (the 8 x 4 DenseNet-121 Block-4 map at 256x128) of ``D = 256``, matched by
a freshly initialised dual attention block in eval mode. Measured:

* ``prepare``: the pair-independent quantities of the whole gallery (``q``, ``xbar``, norms,
  Gram matrices), timed once; the query set's cost is scaled from it;
* exact: :meth:`DualAttention.distance_matrix` of ``--query-slice`` queries against the whole
  gallery (every pair; ``--query-slice 3368`` runs the full matrix). When the slice is smaller
  than the query set, the full-matrix time is **extrapolated**: preparation + all pairs at the
  measured pairs per second (the cost is linear in the number of query blocks);
* two-stage: :meth:`DualAttention.two_stage_distance` with ``k = --k`` on the same slice (pooled
  euclidean ranking of the slice against the whole gallery, then ``k`` exact pairs per query),
  extrapolated the same way;
* a spot check of a few pairs against the literal eq. 1-5 implementation.

Prints the machine, the thread count, pairs per second, the (extrapolated) time of the full
matrix, and the peak resident memory of the process (``ru_maxrss``: features, prepared sets,
output and the block buffers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import time

import torch
import torch.nn.functional as F

from attnreid.models.attention import duatm_kernel
from attnreid.models.attention.dual_attention import DualAttention, literal_sequence_distance

NUM_QUERY, NUM_GALLERY = 3368, 15913


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _sequences(n: int, s: int, d: int, gen: torch.Generator) -> torch.Tensor:
    out = torch.empty(n, s, d)
    for start in range(0, n, 4096):  # bounded temporaries
        chunk = torch.randn(min(4096, n - start), s, d, generator=gen)
        out[start : start + len(chunk)] = F.normalize(chunk, dim=-1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=NUM_QUERY)
    ap.add_argument("--gallery", type=int, default=NUM_GALLERY)
    ap.add_argument("--query-slice", type=int, default=64, help="queries actually scored")
    ap.add_argument("--seq-len", type=int, default=32, help="S (8x4 map at 256x128)")
    ap.add_argument("--dim", type=int, default=256, help="D")
    ap.add_argument("--k", type=int, default=100, help="two-stage: re-scored items per query")
    ap.add_argument("--block-size", type=int, default=None, help="default: 1024 // S")
    ap.add_argument("--skip-two-stage", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    nq, ng, s, d = args.queries, args.gallery, args.seq_len, args.dim
    sl = min(args.query_slice, nq)

    print(
        f"# {dt.date.today()}  {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    block = DualAttention(d).eval()
    query = _sequences(sl, s, d, gen)
    gallery = _sequences(ng, s, d, gen)
    print(
        f"# sequences: {sl} of {nq} queries x {ng} gallery, S={s}, D={d}; "
        f"gallery features {gallery.numel() * 4 / 2**20:.0f} MB; "
        f"peak RSS so far {_peak_rss_mb():.0f} MB"
    )

    t0 = time.perf_counter()
    pg = block.prepare(gallery)
    t_prep_g = time.perf_counter() - t0
    t_prep_q = t_prep_g * nq / ng
    pq = block.prepare(query)

    t0, c0 = time.perf_counter(), time.process_time()
    exact = block.distance_matrix(pq, pg, block_size=args.block_size)
    t_pairs, c_pairs = time.perf_counter() - t0, time.process_time() - c0
    pairs = sl * ng
    rate = pairs / t_pairs
    full = t_prep_g + t_prep_q + nq * ng / rate
    measured = "measured" if sl == nq else f"extrapolated from {sl} queries ({pairs:,} pairs)"
    print(f"# prepare gallery: {t_prep_g:.1f} s (queries, scaled: {t_prep_q:.1f} s)")
    gemm = "oneDNN mkldnn_linear" if duatm_kernel.onednn_is_faster() else "BLAS sgemm"
    print(f"# block products: {gemm} (the faster here, see duatm_kernel.onednn_is_faster)")
    print(f"# exact, {pairs:,} pairs: {t_pairs:.1f} s wall, {c_pairs:.1f} s CPU (all threads)")
    rows = [
        (
            f"exact, {nq:,} x {ng:,} ({nq * ng / 1e6:.1f} M pairs)",
            f"{rate:,.0f}",
            f"{full:.0f} s = {full / 60:.1f} min ({measured})",
        )
    ]

    if not args.skip_two_stage:
        t0 = time.perf_counter()
        two = block.two_stage_distance(pq, pg, k=args.k)
        t_two = time.perf_counter() - t0
        per_query = t_two / sl
        full_two = t_prep_g + t_prep_q + per_query * nq
        rows.append(
            (
                f"two-stage, top {args.k} re-scored ({nq * args.k:,} pairs)",
                f"{sl * args.k / t_two:,.0f}",
                f"{full_two:.0f} s = {full_two / 60:.1f} min ({measured})",
            )
        )
        top = two.topk(args.k, dim=1, largest=False).indices
        assert torch.allclose(two.gather(1, top), exact.gather(1, top), atol=1e-5)

    checks = [(0, 0), (sl - 1, ng - 1), (sl // 2, ng // 3)]
    err = max(
        abs(exact[i, j].item() - literal_sequence_distance(query[i], gallery[j], block))
        for i, j in checks
    )
    print(f"# spot check: max |batched - literal eq. 1-5| over {len(checks)} pairs = {err:.1e}")
    print(f"# peak RSS of the process: {_peak_rss_mb():.0f} MB")
    print()
    print("| what | pairs / s | full-matrix time |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
