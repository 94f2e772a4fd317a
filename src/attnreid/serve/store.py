"""The gallery a search service owns: an index file, the crops it names, safe concurrent updates.

:class:`GalleryStore` wraps a :class:`~attnreid.retrieval.GalleryIndex` bound to its file
(SQLite, :mod:`attnreid.retrieval.index_file`). A crop added through the service is written
first, under a name made of its content's SHA-256 (``<index file>.crops/<hash>.<ext>``, flushed
to disk), then its row is appended to the index in one durable transaction, and only then is
the addition acknowledged; if the row is not written, the image is removed (unless another row
names the same content). Nothing else of the file is rewritten, so ``index build --add`` or
``calibrate --index`` run beside the server are never lost: the server picks their rows and
header up (:meth:`GalleryIndex.refresh <attnreid.retrieval.GalleryIndex.refresh>`) before each
request. At start, images in the crops folder that no row names (a crash between the image and
its row) are removed.

The crops' paths are stored relative to the index file's folder, so a server restarted from
another working directory, or with the index and its crops folder moved together, finds them.
Items are addressed by their row number (``id``); only files that the index names are ever
served: a request gives an id, never a path. One lock serialises the store's reads and writes
within the process (a search never sees a half-added item).
"""

from __future__ import annotations

import hashlib
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from attnreid.retrieval.index import GalleryIndex, SearchHit
from attnreid.utils.io import atomic_write

__all__ = ["GalleryStore"]


class GalleryStore:
    """An index file and the crops it names, shared by the requests of a server."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        self.index = GalleryIndex.load(self.path)
        self.crops_dir = self.path.with_name(self.path.name + ".crops")
        self.lock = threading.RLock()
        self.removed_orphans = self._remove_orphans()
        self._seen, self._cameras, self._times = 0, set(), (np.inf, -np.inf)

    def __len__(self) -> int:
        return len(self.index)

    def refresh(self) -> None:
        """Pick up what other processes wrote to the index file."""
        with self.lock:
            self.index.refresh()

    def summary(self) -> tuple[list[int], tuple[float, float] | None]:
        """``(cameras, (first, last time) or None)`` of the gallery, kept up to date from the
        rows added since the last call: ``GET /api/info`` does not scan a million items."""
        with self.lock:
            m, n = self.index.meta, len(self.index)
            if n < self._seen:  # the file was written anew: start again
                self._seen, self._cameras, self._times = 0, set(), (np.inf, -np.inf)
            if n > self._seen:
                cams, times = m.camids[self._seen : n], m.times[self._seen : n]
                self._cameras.update(int(c) for c in np.unique(cams[cams >= 0]))
                finite = times[np.isfinite(times)]
                if finite.size:
                    lo, hi = self._times
                    self._times = (min(lo, float(finite.min())), max(hi, float(finite.max())))
                self._seen = n
            lo, hi = self._times
            return sorted(self._cameras), ((lo, hi) if lo <= hi else None)

    def item(self, item_id: int) -> SearchHit:
        """Item ``item_id`` (``KeyError`` when there is none)."""
        with self.lock:
            try:
                return self.index.item(item_id)
            except IndexError:
                raise KeyError(item_id) from None

    def image_path(self, hit: SearchHit) -> Path:
        return self.index.resolve(hit.path)

    def search(
        self,
        feature: np.ndarray | None,
        *,
        top: int = 10,
        offset: int = 0,
        crop_id: int | None = None,
        cameras: list[int] | None = None,
        time_from: float | None = None,
        time_to: float | None = None,
        verdict: Any = None,
    ) -> tuple[list[SearchHit], int]:
        """The gallery ranked by distance to ``feature`` (or to gallery item ``crop_id``'s
        stored vector, itself left out), filtered by camera and time window: results
        ``offset .. offset + top`` and the number of items the filters keep (exact)."""
        filters = {"cameras": cameras, "time_from": time_from, "time_to": time_to}
        with self.lock:
            if crop_id is not None:
                feature = self.index.vector(crop_id)
                filters["exclude"] = crop_id
            hits = self.index.search(feature[None], top, offset=offset, **filters)[0]
            total = self.index.count(**filters)
        for hit in hits:
            hit.verdict = verdict(hit.distance) if verdict else None
        return hits, total

    def add(
        self,
        image: bytes,
        suffix: str,
        feature: np.ndarray,
        *,
        pid: int = -1,
        camid: int = -1,
        time: float = math.nan,
    ) -> int:
        """Store an uploaded crop and add it to the index (see the module docstring); returns
        its id. The same image twice is stored once but indexed twice."""
        name = hashlib.sha256(image).hexdigest() + suffix
        target = self.crops_dir / name
        stored = f"{self.crops_dir.name}/{name}"  # relative to the index file's folder
        with self.lock:
            fresh = not target.exists()
            if fresh:
                atomic_write(target, lambda tmp: Path(tmp).write_bytes(image))  # fsync'ed
            try:
                return self.index.add(
                    feature[None], [stored], pids=[pid], camids=[camid], times=[time]
                )
            except BaseException:
                if fresh and stored not in self.index.meta.paths:
                    target.unlink(missing_ok=True)
                raise

    def check_files(self) -> list[str]:
        """Paths the index names that are not files (reported at start-up)."""
        return [p for p in self.index.meta.paths if not self.index.resolve(p).is_file()]

    def _remove_orphans(self) -> int:
        if not self.crops_dir.is_dir():
            return 0
        named = {Path(p).name for p in self.index.meta.paths if p.startswith(self.crops_dir.name)}
        orphans = [f for f in self.crops_dir.iterdir() if f.is_file() and f.name not in named]
        for f in orphans:
            f.unlink(missing_ok=True)
        return len(orphans)
