"""The gallery index file: an SQLite database (WAL) holding the rows; faiss is rebuilt from it.

One file, ``gallery.index``, that several processes may read and append to at once (a server
and ``attnreid index build --add``, say). SQLite, in the standard library, gives the integrity:
every append is one transaction, committed with ``synchronous=FULL`` (on disk before it
returns), so a process killed at any moment leaves every acknowledged row and no half row.

Tables:

* ``header(key, value)``: JSON values: ``format`` (``attnreid-gallery-index``), ``version`` (2),
  ``dim``, ``metric``, ``kind``, ``params`` (nlist, nprobe, hnsw_m, ef_search) and ``info`` (the
  model that made the features, match thresholds ...).
* ``items(id, path, pid, camid, time, feature)``: one row per gallery item, ids ``0 .. N - 1``
  in order; ``feature`` is the float32 vector as the faiss index holds it (L2-normalised for
  the cosine metric); ``time`` NULL when unknown; ``path`` absolute, or relative to the file's
  folder (crops the server stored beside it).
* ``snapshot(chunk, rows, data)``: for ``ivf`` / ``hnsw``, the serialised faiss index of the
  first ``rows`` items, in chunks (SQLite's blobs stop at 1 GB); rows appended after it are
  added to it when the file is opened. A ``flat`` index is rebuilt from the rows.

Opening validates the whole file — SQLite's own check of the pages, the header's keys and
types, every row's feature type and length, the values of the features faiss is given (all of
a ``flat`` file's, those appended after the snapshot of the others: the snapshot holds its
rows' vectors, so their stored copies are checked by SQLite without being read into Python),
ids without gaps, the snapshot's size and dimension — and any fault is one line naming the
file and the fault. The snapshot is read by faiss chunk by chunk from SQLite.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from attnreid.errors import AttnReidError

GalleryIndex = Any  # attnreid.retrieval.index.GalleryIndex, which imports this module
FORMAT = "attnreid-gallery-index"
VERSION = 2
CHUNK = 256 * 2**20  # bytes of a snapshot chunk
BUSY_MS = 30_000  # how long a writer waits for another one
INDEX_FILE = "a readable gallery index (written by attnreid index build)"
_SCHEMA = """
CREATE TABLE header (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (id INTEGER PRIMARY KEY, path TEXT NOT NULL, pid INTEGER NOT NULL,
                    camid INTEGER NOT NULL, time REAL, feature BLOB NOT NULL);
CREATE TABLE snapshot (chunk INTEGER PRIMARY KEY, rows INTEGER NOT NULL, data BLOB NOT NULL);
"""
_HEADER_TYPES = {
    "format": str,
    "version": int,
    "dim": int,
    "metric": str,
    "kind": str,
    "params": dict,
    "info": dict,
}


_COLUMNS = (np.int64, np.int64, np.float64)  # pids, camids, times
#: What reading a damaged file raises: SQLite's errors, and UnicodeDecodeError when the message
#: of one quotes damaged text (a schema's SQL) that Python cannot decode.
_DB_FAULTS = (sqlite3.DatabaseError, UnicodeDecodeError)


def _fault(exc: Exception) -> str:
    """The line of one of :data:`_DB_FAULTS`."""
    if isinstance(exc, UnicodeDecodeError):
        return "malformed database schema (text that is not UTF-8)"
    return str(exc)


class IndexFileError(AttnReidError):
    """A gallery index file that cannot be used: the message names it and the fault."""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_MS / 1e3
    )
    try:
        conn.execute("PRAGMA synchronous=FULL")
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:  # locked for longer than the busy timeout
        raise IndexFileError(f"gallery index {path} is busy ({exc}): try again") from None
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def write(path: str | Path, index: GalleryIndex, features: np.ndarray) -> None:
    """Write ``index`` (its rows' vectors: ``features``) as a new file at ``path``, atomically:
    into a temporary file beside it, then renamed over it, or, over an index file (which other
    connections may have open), copied into it in one transaction (:func:`_copy_into`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        with contextlib.closing(conn):
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN")
            header = {k: v for k, v in index.header().items() if k in _HEADER_TYPES}
            conn.executemany("INSERT INTO header VALUES (?, ?)",
                             [(k, json.dumps(v)) for k, v in header.items()])  # fmt: skip
            _insert(conn, 0, features, index.meta.paths, index.meta.pids, index.meta.camids,
                    index.meta.times)  # fmt: skip
            if index.kind != "flat":
                blob = faiss.serialize_index(index.faiss).tobytes()
                conn.executemany(
                    "INSERT INTO snapshot VALUES (?, ?, ?)",
                    [(i, len(index), blob[s : s + CHUNK]) for i, s in
                     enumerate(range(0, len(blob), CHUNK))],
                )  # fmt: skip
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=WAL")  # readers beside a writer from now on
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if not _copy_into(tmp, path):
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself, on disk
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _copy_into(src: str, path: Path) -> bool:
    """Replace the content of the index file at ``path``, if there is one, by ``src``'s, in one
    transaction of ``path`` (SQLite's backup), and remove ``src``; False when ``path`` is not an
    SQLite file. Renaming a new file over an index that is open would pair its ``-wal`` and
    ``-shm`` (named after the path) with the new file: the connections of the old file would
    write into the new one's log, and its committed frames be read as the new file's pages."""
    try:
        with open(path, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                return False
        with contextlib.closing(sqlite3.connect(src)) as s, contextlib.closing(_connect(path)) as d:
            s.backup(d)
    except (OSError, sqlite3.DatabaseError):  # none there, or damaged: replaced whole
        return False
    os.unlink(src)
    return True


def _insert(
    conn: sqlite3.Connection,
    first: int,
    feats: np.ndarray,
    paths: Sequence[str],
    pids: np.ndarray,
    camids: np.ndarray,
    times: np.ndarray,
) -> None:
    conn.executemany(
        "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)",
        (
            (first + i, str(p), int(pid), int(cam), None if math.isnan(t) else float(t),
             np.ascontiguousarray(f, dtype=np.float32).tobytes())
            for i, (p, pid, cam, t, f) in enumerate(zip(paths, pids, camids, times, feats))
        ),
    )  # fmt: skip


class IndexFile:
    """An open gallery index file (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise IndexFileError(f"gallery index {self.path} does not exist")
        with open(self.path, "rb") as fh:
            magic = fh.read(16)
        if magic != b"SQLite format 3\x00":
            old = magic[:2] == b"PK"  # a zip: the .npz index of attnreid 0.1
            hint = " (an index of attnreid 0.1, a .npz: build it again)" if old else ""
            raise IndexFileError(f"{self.path} is not {INDEX_FILE}{hint}")
        try:  # the first statement reads the schema: a damaged one fails here
            self.conn = _connect(self.path)
        except _DB_FAULTS as exc:
            raise self._fail(_fault(exc)) from None
        self._version: int | None = None

    def _fail(self, fault: str) -> IndexFileError:
        return IndexFileError(f"gallery index {self.path} is damaged: {fault}")

    def header(self) -> dict[str, Any]:
        """The header, checked: every key present with its type."""
        try:
            rows = dict(self.conn.execute("SELECT key, value FROM header").fetchall())
            header = {k: json.loads(v) for k, v in rows.items()}
        except (*_DB_FAULTS, json.JSONDecodeError, TypeError) as exc:
            raise self._fail(f"unreadable header ({exc})") from None
        for key, kind in _HEADER_TYPES.items():
            if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool):
                raise self._fail(f"header key {key!r} is missing or not a {kind.__name__}")
        if header["format"] != FORMAT or header["version"] != VERSION:
            raise self._fail(f"format {header['format']!r} version {header['version']}")
        return header

    def check(self) -> None:
        """SQLite's check of every page and index of the file."""
        try:
            result = self.conn.execute("PRAGMA quick_check").fetchone()[0]
        except _DB_FAULTS as exc:
            raise self._fail(_fault(exc)) from None
        if result != "ok":  # the first fault, without the "*** in database main ***" line
            faults = [x for x in str(result).splitlines() if x and not x.startswith("***")]
            raise self._fail(faults[0] if faults else str(result))

    def rows(self, start: int, dim: int, *, features: bool = True) -> tuple[Any, ...]:
        """``(features, paths, pids, camids, times)`` of the items with ``id >= start``.
        ``features=False``: ``None`` for the features, whose length SQLite checks without
        handing them over (the items a faiss snapshot already holds)."""
        size = 4 * dim
        column = "feature" if features else "typeof(feature) = 'blob' AND length(feature) = ?"
        try:
            got = self.conn.execute(
                f"SELECT id, path, pid, camid, time, {column} FROM items WHERE id >= ? ORDER BY id",
                (start,) if features else (size, start),
            ).fetchall()
        except _DB_FAULTS as exc:
            raise self._fail(f"unreadable rows ({exc})") from None
        if not got:
            empty = np.zeros((0, dim), np.float32) if features else None
            return empty, [], *(np.zeros(0, t) for t in _COLUMNS)
        ids, paths, pids, camids, times, feats = zip(*got)
        if ids[0] != start or ids[-1] != start + len(ids) - 1:
            raise self._fail(f"item ids are not consecutive after {start}")
        fits = (type(f) is bytes and len(f) == size for f in feats) if features else feats
        bad = next((i for i, ok in zip(ids, fits) if not ok), None)
        if bad is not None:
            raise self._fail(f"item {bad}'s feature is not {dim} float32 values")
        try:
            columns = (
                np.asarray(pids, np.int64),
                np.asarray(camids, np.int64),
                np.asarray([math.nan if t is None else t for t in times], np.float64),
            )
        except (TypeError, ValueError, OverflowError):
            raise self._fail("a row holds values of the wrong type") from None
        if not all(isinstance(p, str) and p for p in paths):
            raise self._fail("a row has no image path")
        if not features:
            return None, list(paths), *columns
        vectors = np.frombuffer(b"".join(feats), np.float32).reshape(len(ids), dim)
        if not np.isfinite(vectors).all():
            raise self._fail("a feature holds NaN or infinite values")
        return vectors.copy(), list(paths), *columns

    def snapshot(self) -> tuple[int, Any] | None:
        """``(rows, faiss index)`` of the stored snapshot, or None. faiss reads the chunks as
        SQLite hands them over, one at a time (no copy of the whole snapshot in memory)."""
        try:
            cursor = self.conn.execute("SELECT rows, data FROM snapshot ORDER BY chunk")
            first = cursor.fetchone()
        except _DB_FAULTS as exc:
            raise self._fail(f"unreadable faiss snapshot ({exc})") from None
        if first is None:
            return None
        chunk = [memoryview(first[1])]

        def read(n: int) -> bytes:  # faiss asks for n bytes; fewer only at the end
            out = bytearray()
            while len(out) < n:
                if not chunk[0]:
                    row = cursor.fetchone()
                    if row is None:
                        break
                    chunk[0] = memoryview(row[1])
                part = chunk[0][: n - len(out)]
                out += part
                chunk[0] = chunk[0][len(part) :]
            return bytes(out)

        try:
            return int(first[0]), faiss.read_index(faiss.PyCallbackIOReader(read))
        except (RuntimeError, TypeError, ValueError, *_DB_FAULTS):
            raise self._fail("the faiss snapshot does not deserialise") from None

    def changed(self) -> bool:
        """Whether another connection has written since the last call."""
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        changed, self._version = version != self._version, version
        return changed

    def append(self, index: GalleryIndex, rows: tuple, catch_up: Any) -> int:
        """Append ``rows`` (``features, paths, pids, camids, times``) in one durable
        transaction; rows other writers appended first are handed to ``catch_up(start)``
        inside it, so the new ids follow them. Returns the first new id."""
        with _transaction(self.conn, self.path) as conn:
            total = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            if total < len(index):  # written anew meanwhile (index build, save): ids would gap
                raise IndexFileError(
                    f"gallery index {self.path} was written anew by another process ({total} "
                    f"rows, {len(index)} here): open it again"
                )
            if total > len(index):
                catch_up(len(index))
            first = len(index)
            _insert(conn, first, *rows)
        return first

    def set_header(self, key: str, value: Any) -> None:
        with _transaction(self.conn, self.path) as conn:
            conn.execute("INSERT OR REPLACE INTO header VALUES (?, ?)", (key, json.dumps(value)))

    def feature(self, item: int) -> np.ndarray:
        row = self.conn.execute("SELECT feature FROM items WHERE id = ?", (item,)).fetchone()
        return np.frombuffer(row[0], np.float32)

    def close(self) -> None:
        self.conn.close()
