from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from attnreid.data import PKBatchSampler
from attnreid.errors import ConfigError


def _pids(seed: int = 0, n_ids: int = 30) -> list[int]:
    rng = np.random.default_rng(seed)
    return [pid for pid in range(n_ids) for _ in range(int(rng.integers(1, 12)))]


def test_pk_batches_have_p_identities_times_k():
    pids = _pids()
    s = PKBatchSampler(pids, num_identities=4, num_instances=3, seed=1)
    batches = list(s)
    assert len(batches) == len(s) > 0
    for b in batches:
        assert len(b) == 12
        counts = Counter(pids[i] for i in b)
        assert len(counts) == 4 and set(counts.values()) == {3}


def test_pk_epoch_determinism_and_change():
    pids = _pids()
    a = PKBatchSampler(pids, 4, 3, seed=1)
    b = PKBatchSampler(pids, 4, 3, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)


def test_pk_without_replacement_for_large_identities():
    pids = [0] * 8 + [1] * 8 + [2] * 8
    s = PKBatchSampler(pids, 3, 4, seed=0)
    seen = [i for b in s for i in b]
    assert len(seen) == len(set(seen)) == 24  # every image exactly once


def test_pk_distributed_ranks_are_disjoint_and_equal_length():
    pids = _pids(3, 40)
    ranks = [PKBatchSampler(pids, 3, 2, seed=5, num_replicas=2, rank=r) for r in (0, 1)]
    seen: list[set[int]] = [set(), set()]
    for epoch in range(4):
        per_rank = []
        for s in ranks:
            s.set_epoch(epoch)
            per_rank.append({pids[i] for b in s for i in b})
            assert all(len({pids[i] for i in b}) == 3 and len(b) == 6 for b in s)
        assert len(ranks[0]) == len(ranks[1]) > 0
        assert not per_rank[0] & per_rank[1]  # disjoint identities within the epoch
        seen = [seen[r] | per_rank[r] for r in (0, 1)]
    assert len(seen[0] & seen[1]) > 10  # a fresh deal every epoch


def _old_single_process_schedule(pids: list[int], p: int, k: int, seed: int, epoch: int):
    """The schedule before identity sharding existed (single process), literally."""
    rng = np.random.default_rng([seed, epoch])
    index_of: dict[int, list[int]] = {}
    for i, pid in enumerate(pids):
        index_of.setdefault(pid, []).append(i)
    groups = {}
    for pid in sorted(index_of):
        idx = np.asarray(index_of[pid])
        if len(idx) < k:
            idx = rng.choice(idx, size=k, replace=True)
        idx = rng.permutation(idx)
        groups[pid] = [idx[j * k : (j + 1) * k].tolist() for j in range(len(idx) // k)]
    out, available = [], [q for q in sorted(index_of) if groups[q]]
    while len(available) >= p:
        chosen = rng.choice(len(available), size=p, replace=False)
        out.append([i for c in chosen for i in groups[available[c]].pop()])
        available = [q for q in available if groups[q]]
    return out


def test_pk_single_process_schedule_is_unchanged_by_sharding():
    pids = _pids(4, 30)
    single = PKBatchSampler(pids, 4, 3, seed=2)
    single.set_epoch(3)
    assert list(single) == _old_single_process_schedule(pids, 4, 3, 2, 3)
    assert single.state() == {
        "seed": 2,
        "epoch": 3,
        "num_identities": 4,
        "num_instances": 3,
        "num_replicas": 1,
        "num_pids": 30,
    }


def test_pk_errors():
    with pytest.raises(ConfigError, match="at least P x world_size = 3 x 1 = 3"):
        PKBatchSampler([0, 0, 1, 1], num_identities=3, num_instances=2)
    with pytest.raises(ConfigError, match="at least P x world_size = 2 x 2 = 4"):
        len(PKBatchSampler([0, 1, 2], num_identities=2, num_instances=1, num_replicas=2))
    with pytest.raises(ConfigError, match="P >= 1"):
        PKBatchSampler([0, 1], num_identities=0, num_instances=2)
