"""Atomic writes: nothing a user keeps is ever left half-written.

Every file the library writes for the user (checkpoints, features, indexes, reports) goes to a
temporary file in the same folder, is flushed and fsync'ed, then renamed over the target with
:func:`os.replace`, which is atomic on POSIX and Windows. If the process dies midway the
previous file is intact and only a ``.tmp`` file may remain.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def _temporary_sibling(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """``(fd, tmp_path)`` of a new temporary file beside ``path``, renamed over ``path`` when
    the block ends normally and removed when it raises."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        yield fd, tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    if "w" not in mode:
        raise ValueError(f"atomic_open is for writing, got mode {mode!r}")
    with _temporary_sibling(path) as (fd, _), os.fdopen(fd, mode) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write(path: str | os.PathLike[str], writer: Callable[[str], None]) -> Path:
    """Call ``writer(tmp_path)`` to produce a file, then atomically move it to ``path``.

    For libraries that insist on writing to a path themselves (``torch.save``,
    ``safetensors.torch.save_file``, ``faiss.write_index``, ``Image.save``).
    """
    with _temporary_sibling(path) as (fd, tmp):
        os.close(fd)
        writer(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)
