"""What the two run drivers (``osnet_ablation.py``, ``osnet_steps.py``) share, so that several
copies of one driver can split its runs between them (two single-threaded trainings on this
2-core machine run at almost the speed of one two-threaded training each):

* :func:`claim` — a run directory is taken by one process at a time (a ``.claimed`` file made
  with ``O_EXCL`` holding the owner's pid; a claim whose process is gone is taken over);
* :func:`append_row` — a finished row is added to the results JSON under an exclusive
  ``flock``, read-append-write, written atomically, so two drivers finishing at once lose
  nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attnreid.utils.io import atomic_write_text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def claim(run_dir: Path) -> Iterator[bool]:
    """Yields True when this process owns ``run_dir`` for the block, False when another live
    process does (skip the run then)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    mark = run_dir / ".claimed"
    for _ in range(2):
        try:
            fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = int(mark.read_text() or 0)
            except (OSError, ValueError):
                owner = 0
            if owner and owner != os.getpid() and _alive(owner):
                yield False
                return
            mark.unlink(missing_ok=True)  # a claim left by a process that died
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        try:
            yield True
        finally:
            mark.unlink(missing_ok=True)
        return
    yield False


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
