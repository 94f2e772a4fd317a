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
    b0, b1 = list(ranks[0]), list(ranks[1])
    assert len(b0) == len(b1) > 0
    for x, y in zip(b0, b1):
        assert not {pids[i] for i in x} & {pids[i] for i in y}


def test_pk_errors():
    with pytest.raises(ConfigError, match="at least P x world_size"):
        PKBatchSampler([0, 0, 1, 1], num_identities=3, num_instances=2)
    with pytest.raises(ConfigError, match="P >= 1"):
        PKBatchSampler([0, 1], num_identities=0, num_instances=2)
