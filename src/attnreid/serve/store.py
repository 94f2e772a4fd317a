"""The gallery a search service owns: an index file, its crops, and safe concurrent updates.

:class:`GalleryStore` wraps a :class:`~attnreid.retrieval.GalleryIndex` loaded from a file. A
crop added through the service is written first, under a name made of its content's SHA-256
(``<index file>.crops/<hash>.<ext>``, atomically), then the index — item added — is written
again, atomically, before the addition is acknowledged. Additions and searches hold one lock,
so they are serialised: a search never sees a half-added item, two uploads never overwrite each
other, and a server killed at any moment restarts with every acknowledged crop (an image whose
index write did not finish is an orphan file, never a broken index).

Items are addressed by their row number in the index (``id``). Only files that the index names
are ever served: a request gives an id, never a path.
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
        self.path = Path(path)
        self.index = GalleryIndex.load(self.path)
        self.crops_dir = self.path.with_name(self.path.name + ".crops")
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.index)

    @property
    def cameras(self) -> list[int]:
        return sorted({int(c) for c in self.index.meta.camids if c >= 0})

    def item(self, item_id: int) -> SearchHit:
        """Item ``item_id`` (``KeyError`` when there is none)."""
        try:
            return self.index.item(item_id)
        except IndexError:
            raise KeyError(item_id) from None

    def search(
        self,
        feature: np.ndarray,
        *,
        top: int = 10,
        offset: int = 0,
        cameras: list[int] | None = None,
        time_from: float | None = None,
        time_to: float | None = None,
        exclude: int | None = None,
        verdict: Any = None,
    ) -> tuple[list[SearchHit], int]:
        """The gallery ranked by distance to ``feature``, filtered by camera and time window,
        results ``offset .. offset + top``; returns them and the number of filtered items."""
        with self.lock:
            n = len(self.index)
            dist, idx = self.index.search_arrays(feature[None], top_k=max(n, 1))
        m = self.index.meta
        keep = idx[0] >= 0
        order, dists = idx[0][keep], dist[0][keep]
        mask = np.ones(order.size, bool)
        if exclude is not None:
            mask &= order != exclude
        if cameras:
            mask &= np.isin(m.camids[order], cameras)
        times = m.times[order]
        if time_from is not None:
            mask &= times >= time_from
        if time_to is not None:
            mask &= times <= time_to
        order, dists = order[mask], dists[mask]
        hits = []
        for rank in range(offset, min(offset + top, order.size)):
            hit = self.index.item(int(order[rank]))
            hit.rank, hit.distance = rank + 1, float(dists[rank])
            hit.verdict = verdict(hit.distance) if verdict else None
            hits.append(hit)
        return hits, int(order.size)

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
        """Store an uploaded crop and add it to the index (see the module docstring);
        returns its id. The same image twice is stored once but indexed twice."""
        digest = hashlib.sha256(image).hexdigest()
        target = self.crops_dir / f"{digest}{suffix}"
        if not target.exists():
            atomic_write(target, lambda tmp: Path(tmp).write_bytes(image))
        with self.lock:
            self.index.add(feature[None], [str(target)], pids=[pid], camids=[camid], times=[time])
            try:
                self.index.save(self.path)
            except BaseException:
                self.index = GalleryIndex.load(self.path)  # the file is the truth
                raise
            return len(self.index) - 1

    def check_files(self) -> list[str]:
        """Paths the index names that are not files (reported at start-up)."""
        return [p for p in self.index.meta.paths if not Path(p).is_file()]
