"""Inference-time measurement (SONA-Net's section 3.5 compares forward times with and without
its attention modules).

``measure_latency`` runs the model in eval mode on random input of the configured size: a few
warm-up forwards (allocator, oneDNN primitive caches, cuDNN autotuning), then ``repeats`` timed
forwards; it reports the median and the quartiles in milliseconds and the peak memory. Several
models are timed interleaved (``measure_latencies``). On CUDA
the clock waits for the device (``torch.cuda.synchronize``) and the peak is the CUDA allocator's;
on the CPU the peak is the process's maximum resident set size.

Each result also gives the parameter count and the FLOPs of one image, counted by
``torch.utils.flop_counter.FlopCounterMode`` on one extra forward: one multiply-add counts as
two FLOPs (torchreid's and the OSNet paper's "mult-adds" are half this figure), and only the
operators that counter knows (convolutions, matrix products, attention) are counted.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


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
    gflops: float  # per image, 2 FLOPs per multiply-add

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


@torch.no_grad()
def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of ``model(x)`` for the whole batch ``x`` (2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


@torch.no_grad()
def measure_latencies(
    models: Sequence[nn.Module],
    sizes: Sequence[tuple[int, int]],
    *,
    batch: int = 1,
    repeats: int = 30,
    warmup: int = 5,
    device: torch.device | str = "cpu",
) -> list[Latency]:
    """Median forward time of each model on a ``(batch, 3, height, width)`` input, with
    ``sizes[i] = (height, width)`` the input size of ``models[i]``.

    The models are timed **interleaved**: each round times one forward of every model (the
    order rotating from round to round), so a change in machine load during the measurement
    falls on all of them alike and their ratios stay comparable. The peak memory is the
    process's (CPU) or the allocator's (CUDA) over the whole measurement.
    """
    device = torch.device(device)
    if len(sizes) != len(models):
        raise ValueError(f"{len(models)} models but {len(sizes)} input sizes")
    models = [m.to(device).eval() for m in models]
    xs = [torch.randn(batch, 3, h, w, device=device) for h, w in sizes]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for model, x in zip(models, xs):
        for _ in range(warmup):
            model(x)
    times: list[list[float]] = [[] for _ in models]
    for r in range(repeats):
        for k in range(len(models)):
            i = (r + k) % len(models)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            models[i](xs[i])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[i].append((time.perf_counter() - t0) * 1000)
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _peak_rss_mb()
    )
    out = []
    for model, x, (height, width), ts in zip(models, xs, sizes, times):
        q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
        params = sum(p.numel() for p in model.parameters()) / 1e6
        gflops = count_flops(model, x) / batch / 1e9
        out.append(
            Latency(
                statistics.median(ts), q[0], q[2], repeats, batch, height, width, str(device),
                torch.get_num_threads(), peak, params, gflops,
            )
        )
    return out


def measure_latency(model: nn.Module, height: int, width: int, **options: Any) -> Latency:
    """Median forward time of one model; ``options`` (batch, repeats, warmup, device) as in
    :func:`measure_latencies`."""
    return measure_latencies([model], [(height, width)], **options)[0]
