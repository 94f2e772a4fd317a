"""Inference-time measurement (SONA-Net's section 3.5 compares forward times with and without
its attention modules).

``measure_latency`` runs the model in eval mode on random input of the configured size: a few
warm-up forwards (allocator, oneDNN primitive caches, cuDNN autotuning), then ``repeats`` timed
forwards; it reports the median and the quartiles in milliseconds and the peak memory. On CUDA
the clock waits for the device (``torch.cuda.synchronize``) and the peak is the CUDA allocator's;
on the CPU the peak is the process's maximum resident set size.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class Latency:
    median_ms: float
    q1_ms: float
    q3_ms: float
    repeats: int
    batch: int
    height: int
    width: int
    device: str
    threads: int
    peak_mem_mb: float
    params_m: float

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    height: int,
    width: int,
    *,
    batch: int = 1,
    repeats: int = 30,
    warmup: int = 5,
    device: torch.device | str = "cpu",
) -> Latency:
    """Median forward time of ``model`` on a ``(batch, 3, height, width)`` input."""
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.randn(batch, 3, height, width, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1000)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _peak_rss_mb()
    )
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return Latency(
        statistics.median(times),
        q[0],
        q[2],
        repeats,
        batch,
        height,
        width,
        str(device),
        torch.get_num_threads(),
        peak,
        params,
    )
