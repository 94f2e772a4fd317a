"""What the two run drivers (``osnet_ablation.py``, ``osnet_steps.py``) share, so that several
copies of one driver can split its runs between them (two single-threaded trainings on this
2-core machine run at almost the speed of one two-threaded training each):

* :func:`claim` — a run directory is taken by one process at a time (an ``flock`` on its
  ``.claimed`` file, which the kernel releases when the owner exits, killed or not);
* :func:`append_row` — a finished row is added to the results JSON under an exclusive
  ``flock``, read-append-write, written atomically, so two drivers finishing at once lose
  nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attnreid.utils.io import atomic_write_text


@contextlib.contextmanager
def claim(run_dir: Path) -> Iterator[bool]:
    """Yields True when this process owns ``run_dir`` for the block, False when another live
    process does (skip the run then). The claim is an ``flock`` on ``run_dir/.claimed``: the
    kernel drops it when its owner exits, however it dies, so nothing is left to take over."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".claimed", "a") as mark:
        try:
            fcntl.flock(mark, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def load_rows(path: Path, key: str) -> list[dict[str, Any]]:
    return json.loads(path.read_text())[key] if path.is_file() else []


def append_row(path: Path, key: str, row: dict[str, Any]) -> None:
    """``path[key].append(row)``, atomically and under a lock shared by every driver."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.is_file() else {key: []}
        data[key].append(row)
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")
