"""Benchmark of the ranking metrics and the distance matrix at Market-1501 scale.

Run: ``python benchmarks/bench_metrics.py`` (``--help`` for options).

* ``evaluate_rank`` (market protocol) on a random ``float32`` distance matrix of 3,368 queries x
  15,913 gallery images with realistic ids: 751 test identities seen by 6 cameras (4-5 queries per
  identity from distinct cameras, ~16 gallery images each), 2,798 distractors (pid 0) and 1,000
  junk images (pid -1). One warm-up, then ``--repeats`` timed runs; median and min wall time,
  the peak RSS reached during those runs (above the RSS before them) and the tracemalloc peak of
  one extra run. For context: numpy's ``argsort`` of the same matrix (torchreid's first step)
  and ``evaluate_rank`` on the same matrix in ``float64`` (the argsort + tie-repair path).
* ``compute_distance`` of random 2,048-d features at that scale (euclidean and cosine).

Prints the machine (cores, CPU model, numpy / torch versions, date) and one Markdown table row.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnreid.evaluation.metrics import evaluate_rank
from attnreid.utils.distance import compute_distance

NUM_IDS, NUM_CAMS = 751, 6
NUM_QUERY, NUM_GALLERY = 3368, 15913
NUM_DISTRACTORS, NUM_JUNK = 2798, 1000


def market_like_ids(seed: int) -> tuple[np.ndarray, ...]:
    """q_pids, g_pids, q_camids, g_camids shaped like Market-1501's test split."""
    rng = np.random.default_rng(seed)
    per_id = np.full(NUM_IDS, NUM_QUERY // NUM_IDS)
    per_id[rng.choice(NUM_IDS, NUM_QUERY - per_id.sum(), replace=False)] += 1
    q_pids = np.repeat(np.arange(1, NUM_IDS + 1), per_id)
    q_camids = np.concatenate([rng.choice(NUM_CAMS, n, replace=False) + 1 for n in per_id])
    num_id_images = NUM_GALLERY - NUM_DISTRACTORS - NUM_JUNK
    g_pids = np.concatenate(
        [
            rng.integers(1, NUM_IDS + 1, num_id_images),
            np.zeros(NUM_DISTRACTORS, dtype=np.int64),
            np.full(NUM_JUNK, -1, dtype=np.int64),
        ]
    )
    rng.shuffle(g_pids)
    g_camids = rng.integers(1, NUM_CAMS + 1, NUM_GALLERY)
    return q_pids, g_pids, q_camids, g_camids


def random_distmat(q_pids: np.ndarray, g_pids: np.ndarray, seed: int) -> np.ndarray:
    """Uniform random float32 distances, true matches pulled closer (non-trivial metrics)."""
    rng = np.random.default_rng(seed + 1)
    d = rng.random((q_pids.size, g_pids.size), dtype=np.float32)
    same = q_pids[:, None] == g_pids[None, :]
    # a true match lands at about rank s * G with s log-uniform in [1e-5, 1]
    scale = 10.0 ** rng.uniform(-5, 0, int(same.sum()))
    d[same] *= scale.astype(np.float32)
    return d


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB, from /proc (ru_maxrss elsewhere)."""
    status = Path("/proc/self/status")
    if status.exists():
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak, peak


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return {
        "nproc": str(cores),
        "cpu": cpu,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension (distance)")
    parser.add_argument("--skip-distance", action="store_true")
    parser.add_argument("--skip-context", action="store_true", help="skip argsort / float64")
    args = parser.parse_args()

    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))

    q_pids, g_pids, q_camids, g_camids = market_like_ids(args.seed)
    distmat = random_distmat(q_pids, g_pids, args.seed)
    print(
        f"data: {NUM_QUERY} queries x {NUM_GALLERY} gallery ({NUM_IDS} ids, {NUM_CAMS} cameras, "
        f"{NUM_DISTRACTORS} pid 0, {NUM_JUNK} pid -1), distmat {distmat.dtype} "
        f"{distmat.nbytes / 2**20:.0f} MB"
    )

    def run() -> Any:
        return evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)

    result = run()  # warm-up
    rss_before, _ = rss_mb()
    exact_peak = reset_peak_rss()
    times = timed(run, args.repeats, warmup=0)
    _, rss_peak = rss_mb()
    tracemalloc.start()
    run()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    med, best = statistics.median(times), min(times)
    rss_note = "" if exact_peak else " (process peak: /proc/self/clear_refs unavailable)"
    print(
        f"evaluate_rank market float32: median {med:.3f} s, min {best:.3f} s over "
        f"{args.repeats} runs ({', '.join(f'{t:.3f}' for t in times)})"
    )
    print(
        f"  peak RSS during runs: {rss_peak:.0f} MB (+{rss_peak - rss_before:.0f} MB above the "
        f"{rss_before:.0f} MB before){rss_note}; tracemalloc peak {traced_peak / 2**20:.0f} MB"
    )
    print(
        f"  result: rank1 {result.rank(1):.4f}, mAP {result.mAP:.4f}, mINP {result.mINP:.4f}, "
        f"{result.num_valid_queries} scored, {result.num_skipped_queries} skipped"
    )

    if not args.skip_context:
        t_sort = timed(lambda: np.argsort(distmat, axis=1), 1, warmup=0)[0]
        print(f"context: np.argsort(distmat, axis=1) alone: {t_sort:.3f} s")
        d64 = distmat.astype(np.float64)
        d64 += 1e-12  # values no longer float32 values: the generic path
        t64 = timed(lambda: evaluate_rank(d64, q_pids, g_pids, q_camids, g_camids), 3)
        print(f"context: evaluate_rank on a float64 matrix: median {statistics.median(t64):.3f} s")
        del d64

    dist_cells = ""
    if not args.skip_distance:
        rng = np.random.default_rng(args.seed + 2)
        qf = torch.from_numpy(rng.standard_normal((NUM_QUERY, args.dim), dtype=np.float32))
        gf = torch.from_numpy(rng.standard_normal((NUM_GALLERY, args.dim), dtype=np.float32))
        for metric in ("euclidean", "cosine"):
            t = timed(lambda m=metric: compute_distance(qf, gf, metric=m), 3)
            print(
                f"compute_distance {metric} {NUM_QUERY}x{args.dim} vs {NUM_GALLERY}x{args.dim} "
                f"float32: median {statistics.median(t):.3f} s, min {min(t):.3f} s"
            )
            dist_cells += f" {metric} dist {statistics.median(t):.2f} s |"

    print("\nMarkdown row:")
    print(
        "| machine | evaluate_rank (market, 3368x15913, float32) median / min | peak RSS (+) "
        "| tracemalloc peak |" + (" distance (2048-d) | distance (cosine) |" if dist_cells else "")
    )
    print(
        f"| {info['nproc']} cores {info['cpu']}, numpy {info['numpy']}, torch {info['torch']}, "
        f"{info['date']} | {med:.3f} s / {best:.3f} s | +{rss_peak - rss_before:.0f} MB "
        f"| {traced_peak / 2**20:.0f} MB |{dist_cells}"
    )


if __name__ == "__main__":
    main()
