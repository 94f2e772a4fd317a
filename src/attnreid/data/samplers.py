"""Identity-balanced batch sampling (P identities x K images), single- and multi-process.

Each epoch, every identity's images are shuffled and cut into groups of ``K`` (an identity
with fewer than ``K`` images is sampled with replacement to ``K``, as torchreid's
``RandomIdentitySampler``); then steps of ``P`` *distinct* identities that still have groups
left are drawn until fewer than ``P`` remain.

Several processes (DDP, ``world_size > 1``): each epoch the identities are dealt into
``world_size`` disjoint shards of about equal image counts (a fresh random deal every epoch,
so every rank sees every identity over the epochs) and rank ``r`` draws its steps from shard
``r`` only. So within an epoch the ranks see disjoint identities, and every rank yields the
same number of batches (the smallest shard's count: every rank computes every shard's
schedule). The whole schedule is a pure function of ``(seed, epoch, world_size)`` — which
makes runs reproducible and resumable. Rank and world size are read from
:mod:`torch.distributed` when first needed (after Lightning has set up the process group),
unless given. Call :meth:`PKBatchSampler.set_epoch` before each epoch (Lightning does not
for a ``batch_sampler``: :class:`attnreid.engine.callbacks.SamplerState` does it in training).
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
        self.index_of: dict[int, list[int]] = defaultdict(list)
        for i, pid in enumerate(pids):
            self.index_of[int(pid)].append(i)
        self.pids = sorted(self.index_of)
        self.P, self.K = num_identities, num_instances
        self.seed, self.epoch = seed, 0
        self._replicas, self._rank = num_replicas, rank
        self._check_world(num_replicas or 1)
        self._cache: tuple[tuple[int, int], list[list[list[list[int]]]]] | None = None

    def _check_world(self, world: int) -> None:
        need = self.P * world
        if len(self.pids) < need:
            raise ConfigError(
                f"P x K sampling needs at least P x world_size = {self.P} x {world} = {need} "
                f"training identities, the dataset has {len(self.pids)}; lower "
                f"data.num_identities"
            )

    @property
    def num_replicas(self) -> int:
        """The world size: given, or the process group's (1 without one)."""
        if self._replicas is None:
            return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        return self._replicas

    @property
    def rank(self) -> int:
        if self._rank is None:
            return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        return self._rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state(self) -> dict[str, int]:
        """What the schedule depends on (stored in training checkpoints)."""
        return {
            "seed": int(self.seed),
            "epoch": int(self.epoch),
            "num_identities": self.P,
            "num_instances": self.K,
            "num_replicas": self.num_replicas,
            "num_pids": len(self.pids),
        }

    def _schedule(self) -> list[list[list[int]]]:
        """This rank's steps: each a list of ``P`` groups of ``K`` indices."""
        world = self.num_replicas
        key = (self.epoch, world)
        if self._cache is None or self._cache[0] != key:
            self._check_world(world)
            self._cache = (key, self._draw(world))
        return self._cache[1][self.rank]

    def _draw(self, world: int) -> list[list[list[list[int]]]]:
        """Every rank's steps (each rank computes all, so all agree on the length)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: dict[int, list[list[int]]] = {}
        for pid in self.pids:
            idx = np.asarray(self.index_of[pid])
            if len(idx) < self.K:
                idx = rng.choice(idx, size=self.K, replace=True)
            idx = rng.permutation(idx)
            n = len(idx) // self.K
            groups[pid] = [idx[j * self.K : (j + 1) * self.K].tolist() for j in range(n)]
        shards = [self.pids] if world == 1 else self._deal(groups, world, rng)
        per_rank = [self._steps(shard, groups, rng) for shard in shards]
        length = min(len(s) for s in per_rank)
        return [s[:length] for s in per_rank]

    @staticmethod
    def _deal(
        groups: dict[int, list[list[int]]], world: int, rng: np.random.Generator
    ) -> list[list[int]]:
        """Identities dealt into ``world`` shards: shuffled, then by decreasing group count
        in snake order (0, 1, .., W-1, W-1, .., 0, ...), which balances the shards."""
        order = [int(p) for p in rng.permutation(np.asarray(sorted(groups)))]
        order.sort(key=lambda p: -len(groups[p]))  # stable: shuffled among equal counts
        shards: list[list[int]] = [[] for _ in range(world)]
        for i, pid in enumerate(order):
            turn, pos = divmod(i, world)
            shards[pos if turn % 2 == 0 else world - 1 - pos].append(pid)
        return [sorted(s) for s in shards]

    def _steps(
        self, pids: list[int], groups: dict[int, list[list[int]]], rng: np.random.Generator
    ) -> list[list[list[int]]]:
        steps = []
        available = [p for p in pids if groups[p]]
        while len(available) >= self.P:
            chosen = rng.choice(len(available), size=self.P, replace=False)
            steps.append([groups[available[c]].pop() for c in chosen])
            available = [p for p in available if groups[p]]
        return steps

    def __iter__(self) -> Iterator[list[int]]:
        for step in self._schedule():
            yield [i for group in step for i in group]

    def __len__(self) -> int:
        return len(self._schedule())
