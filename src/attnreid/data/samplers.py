"""Identity-balanced batch sampling (P identities x K images), single- and multi-process.

Each epoch, every identity's images are shuffled and cut into groups of ``K`` (an identity
with fewer than ``K`` images is sampled with replacement to ``K``, as torchreid's
``RandomIdentitySampler``). Steps are then drawn as ``world_size * P`` *distinct* identities
that still have groups left; rank ``r`` takes identities ``r*P .. (r+1)*P - 1`` of each step.
So at every step the ranks see disjoint identities, every rank yields the same number of
batches, and the whole schedule is a pure function of ``(seed, epoch)`` — which makes runs
reproducible and resumable. Call :meth:`PKBatchSampler.set_epoch` at each epoch (Lightning
does it for a ``batch_sampler``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

from attnreid.errors import ConfigError


class PKBatchSampler(Sampler[list[int]]):
    """Yields batches of indices: ``num_identities`` identities x ``num_instances`` images."""

    def __init__(
        self,
        pids: Sequence[int],
        num_identities: int,
        num_instances: int,
        *,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if num_identities < 1 or num_instances < 1:
            raise ConfigError(
                f"P x K sampling needs P >= 1 and K >= 1, got P={num_identities}, K={num_instances}"
            )
        if num_replicas is None:
            num_replicas = (
                dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
            )
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        self.index_of: dict[int, list[int]] = defaultdict(list)
        for i, pid in enumerate(pids):
            self.index_of[int(pid)].append(i)
        self.pids = sorted(self.index_of)
        need = num_identities * num_replicas
        if len(self.pids) < need:
            raise ConfigError(
                f"P x K sampling needs at least P x world_size = {need} training identities, "
                f"the dataset has {len(self.pids)}; lower data.num_identities"
            )
        self.P, self.K = num_identities, num_instances
        self.seed, self.epoch = seed, 0
        self.num_replicas, self.rank = num_replicas, rank
        self._cache: tuple[int, list[list[list[int]]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _schedule(self) -> list[list[list[int]]]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._draw())
        return self._cache[1]

    def _draw(self) -> list[list[list[int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: dict[int, list[list[int]]] = {}
        for pid in self.pids:
            idx = np.asarray(self.index_of[pid])
            if len(idx) < self.K:
                idx = rng.choice(idx, size=self.K, replace=True)
            idx = rng.permutation(idx)
            n = len(idx) // self.K
            groups[pid] = [idx[j * self.K : (j + 1) * self.K].tolist() for j in range(n)]
        need = self.P * self.num_replicas
        steps = []
        available = [p for p in self.pids if groups[p]]
        while len(available) >= need:
            chosen = rng.choice(len(available), size=need, replace=False)
            step = [groups[available[c]].pop() for c in chosen]
            steps.append(step)
            available = [p for p in available if groups[p]]
        return steps

    def __iter__(self) -> Iterator[list[int]]:
        lo, hi = self.rank * self.P, (self.rank + 1) * self.P
        for step in self._schedule():
            yield [i for group in step[lo:hi] for i in group]

    def __len__(self) -> int:
        return len(self._schedule())
