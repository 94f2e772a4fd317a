"""The kill test in CI: ``benchmarks/bench_kill.py``'s run, once: ``attnreid serve`` killed with
SIGKILL at a random moment while 8 clients add crops, restarted from another working directory,
keeps every acknowledged crop (its bytes exactly), opens as a valid index and leaves no orphan
image and no temporary file."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from benchmarks.bench_kill import kill_run, prepare

pytestmark = pytest.mark.slow


def test_sigkill_while_8_clients_add_crops_loses_nothing_and_leaves_no_orphan(tmp_path: Path):
    gallery = prepare(tmp_path / "model")
    result = kill_run(gallery, tmp_path / "run", clients=8, max_delay=2.0, rng=random.Random())
    print(result.line())
    assert result.acknowledged > 0
    assert not result.problems, result.problems
    assert result.lost == 0
    assert result.rows >= result.acknowledged  # more: committed rows whose answer was cut off
    assert result.orphans == 0 and result.tmp_files == 0 and result.missing_images == 0
    assert result.ok
