"""Feature extraction shared by the processes of a DDP run, equal to a single process's.

Under :mod:`torch.distributed` (``world_size > 1``) every rank first takes rank 0's weights
and buffers (DDP keeps the parameters equal but not the BatchNorm running statistics, which
each rank updates from its own batches), extracts the features of one contiguous share of
the items, and all ranks gather the shares back in item order. The result is the
:class:`~attnreid.evaluation.features.FeatureSet` a single process would compute with rank
0's model over all items; rank 0 then scores it. Features are gathered in chunks of rows
(on the GPU for NCCL, on the CPU for gloo) and kept on the CPU. Without a process group the
functions here are plain single-process extraction.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from attnreid.data.base import ReIDItem
from attnreid.evaluation.extractor import FeatureExtractor
from attnreid.evaluation.features import FeatureSet

__all__ = ["extract_sharded", "process_group", "shard_bounds", "sync_model_state"]

_GATHER_ROWS = 8192  # rows per all_gather call (bounds the communication buffers)


def process_group() -> tuple[int, int]:
    """``(rank, world_size)`` of the current process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(n: int, world: int) -> list[tuple[int, int]]:
    """Contiguous ``[lo, hi)`` shares of ``n`` items for ``world`` ranks (sizes differ by at
    most one)."""
    edges = [n * r // world for r in range(world + 1)]
    return list(itertools.pairwise(edges))


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@torch.no_grad()
def sync_model_state(model: nn.Module, src: int = 0) -> None:
    """Give every rank rank ``src``'s parameters and buffers (in place)."""
    if process_group()[1] == 1:
        return
    comm = _comm_device()
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.device == comm:
            dist.broadcast(tensor.data, src=src)
        else:
            buf = tensor.data.to(comm)
            dist.broadcast(buf, src=src)
            tensor.data.copy_(buf)


def _gather_rows(x: Tensor, counts: Sequence[int]) -> Tensor:
    """Concatenate every rank's ``x`` (``counts[r]`` rows on rank ``r``, same trailing shape)
    in rank order, on the CPU."""
    world, most = len(counts), max(counts)
    comm = _comm_device()
    padded = torch.zeros((most, *x.shape[1:]), dtype=x.dtype)
    padded[: len(x)] = x.cpu()
    pieces: list[list[Tensor]] = [[] for _ in range(world)]
    for start in range(0, most, _GATHER_ROWS):
        chunk = padded[start : start + _GATHER_ROWS].to(comm).contiguous()
        out = [torch.empty_like(chunk) for _ in range(world)]
        dist.all_gather(out, chunk)
        for r in range(world):
            pieces[r].append(out[r].cpu())
    return torch.cat([torch.cat(pieces[r])[: counts[r]] for r in range(world)])


def extract_sharded(extractor: FeatureExtractor, items: Sequence[ReIDItem]) -> FeatureSet:
    """``extractor.extract(items)``, shared by the ranks of the process group (every rank gets
    the whole result). Call :func:`sync_model_state` first so that all ranks extract with the
    same model."""
    rank, world = process_group()
    if world == 1 or len(items) < world:  # nothing to share
        return extractor.extract(items)
    bounds = shard_bounds(len(items), world)
    lo, hi = bounds[rank]
    local = extractor.extract(items[lo:hi])
    counts = [b - a for a, b in bounds]
    feats = _gather_rows(local.features, counts)
    pids = _gather_rows(torch.from_numpy(local.pids), counts).numpy()
    camids = _gather_rows(torch.from_numpy(local.camids), counts).numpy()
    return FeatureSet(
        feats, pids.astype(np.int64), camids.astype(np.int64), [it.path for it in items]
    )
