"""A searchable gallery: features of person crops in a faiss index, with their metadata.

>>> index = GalleryIndex.build(features, paths, metric="cosine")        # doctest: +SKIP
>>> index.save("gallery.index"); index = GalleryIndex.load("gallery.index")  # doctest: +SKIP
>>> index.add(more_features, more_paths)        # appended to the file, durably  # doctest: +SKIP
>>> hits = index.search(query_features, top_k=10, cameras=[0, 2])[0]  # doctest: +SKIP

**Metric.** It matches the model's evaluation metric: ``"cosine"`` stores L2-normalised
features in an inner-product index (``distance = 1 - cosine similarity``); ``"euclidean"`` an
L2 index (``distance = squared euclidean``). These are the distances of
:func:`attnreid.utils.distance.compute_distance`, so a search ranks the gallery as
evaluation does. (A model ranking feature sequences with its own distance, DuATM's matching,
cannot be run by faiss: ``index build``, ``search`` and ``serve`` load it with its feature
vector, ``attnreid.load(..., vectors=True)``.)

**Kinds.** ``"flat"`` (default) is exact brute force. ``"ivf"`` (inverted lists over ``nlist``
k-means cells, default ``4 sqrt(N)``, trained on the first batch of features with at most 64
points a cell; ``nprobe`` of them searched, default a sixteenth and at least 16) and
``"hnsw"`` (a graph with ``hnsw_m`` links per node, ``ef_search`` candidates) are approximate
and much faster on large galleries (``benchmarks/bench_million.py`` measures them).

**Filters.** A search may keep only some cameras, a time window and leave out one item (the
query crop itself): faiss applies them (an ID selector over the allowed items), so the index
is asked for ``offset + top_k`` results only, whatever its size, and :meth:`count` gives the
exact number of items a filter keeps.

**Metadata.** Every item keeps its path, identity (``pid``, -1 when unknown), camera
(``camid``, -1 when unknown) and time (``time``, e.g. a frame number or a timestamp; NaN when
unknown). ``info`` holds free-form JSON-able facts, e.g. the model that made the features.

**File.** An SQLite database (:mod:`attnreid.retrieval.index_file`): :meth:`save` writes a new
one atomically; an index opened with :meth:`load` is bound to its file: :meth:`add` appends the
rows durably before they are searchable, :meth:`set_info` updates the header, and
:meth:`refresh` picks up what other processes appended.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from attnreid.errors import AttnReidError, CheckpointError, ConfigError
from attnreid.retrieval import index_file
from attnreid.retrieval.index_file import IndexFile
from attnreid.utils.checks import one_of, positive_int
from attnreid.utils.distance import DISTANCE_METRICS

__all__ = ["INDEX_KINDS", "GalleryIndex", "SearchHit"]

INDEX_KINDS = ("flat", "ivf", "hnsw")
EXACT_FILTER = 100_000  # a filter keeping at most this many items is searched exactly
FORMAT_VERSION = 1


@dataclass
class SearchHit:
    """One gallery item: as a search returns it (``rank`` 1-based, ``distance``, and the
    ``verdict`` of match thresholds when there are any) or as the gallery lists it (those
    None). The one record from the index to the JSON answers of ``search`` and ``serve``."""

    id: int  # the row in the index
    path: str
    pid: int  # -1: unknown
    camid: int  # 0-based, -1: unknown
    time: float  # NaN: unknown
    rank: int | None = None
    distance: float | None = None
    verdict: str | None = None  # "match" | "possible" | "no match"

    def as_dict(self, *, path: bool = True) -> dict[str, Any]:
        """JSON-able, as users see it: camera 1-based, unknowns as null; ``path=False``
        leaves out the file path (the server names images by id)."""
        out = {
            "id": self.id,
            "rank": self.rank,
            "distance": self.distance,
            "name": Path(self.path).name,
            "pid": self.pid if self.pid >= 0 else None,
            "camera": self.camid + 1 if self.camid >= 0 else None,
            "time": None if math.isnan(self.time) else self.time,
            "verdict": self.verdict,
        }
        return {**out, "path": self.path} if path else out


@dataclass
class _Meta:
    paths: list[str] = field(default_factory=list)
    pids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    camids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    #: derived from ``camids``, kept on add: a camera filter sizes its table without a scan
    max_camid: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        self.max_camid = int(np.max(self.camids, initial=-1))


def _as_features(x: Any) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
        raise ConfigError(
            f"a gallery index needs one feature vector per image, (N, D), got shape {a.shape} "
            "(DuATM's sequences: load the model with attnreid.load(..., vectors=True) for its "
            "feature vector)"
        )
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ConfigError("features contain NaN or infinite values")
    return a


def _column(values: Any, n: int, name: str, dtype: Any, missing: Any) -> np.ndarray:
    if values is None:
        return np.full(n, missing, dtype=dtype)
    a = np.asarray(values, dtype=dtype).reshape(-1)
    if a.shape[0] != n:
        raise ConfigError(f"{n} features but {a.shape[0]} {name}")
    return a


class GalleryIndex:
    """Features of gallery images in a faiss index, with their paths and metadata."""

    def __init__(
        self,
        dim: int,
        *,
        metric: str = "cosine",
        kind: str = "flat",
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = 32,
        ef_search: int = 128,
        info: dict[str, Any] | None = None,
    ) -> None:
        one_of(metric, DISTANCE_METRICS, "index metric")
        one_of(kind, INDEX_KINDS, "index kind")
        positive_int(dim, "feature dimension")
        self.dim, self.metric, self.kind = int(dim), metric, kind
        self.params = {"nlist": nlist, "nprobe": nprobe, "hnsw_m": hnsw_m, "ef_search": ef_search}
        self.info: dict[str, Any] = dict(info or {})
        self.meta = _Meta()
        self.faiss: Any = None  # created on the first add (IVF is trained on it)
        self.file: IndexFile | None = None  # the file the index is bound to (load / save)

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        features: Any,
        paths: Sequence[str],
        *,
        pids: Any = None,
        camids: Any = None,
        times: Any = None,
        metric: str = "cosine",
        kind: str = "flat",
        info: dict[str, Any] | None = None,
        **params: Any,
    ) -> GalleryIndex:
        """A new index holding ``features`` (``(N, D)``) of the images ``paths``."""
        feats = _as_features(features)
        index = cls(feats.shape[1], metric=metric, kind=kind, info=info, **params)
        index.add(feats, paths, pids=pids, camids=camids, times=times)
        return index

    def _faiss_metric(self) -> int:
        return faiss.METRIC_INNER_PRODUCT if self.metric == "cosine" else faiss.METRIC_L2

    def _create(self, first: np.ndarray) -> Any:
        d, metric = self.dim, self._faiss_metric()
        flat = faiss.IndexFlatIP(d) if self.metric == "cosine" else faiss.IndexFlatL2(d)
        if self.kind == "flat":
            return flat
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, int(self.params["hnsw_m"]), metric)
            index.hnsw.efSearch = int(self.params["ef_search"])
            return index
        n = first.shape[0]
        nlist = self.params["nlist"] or max(1, int(4 * math.sqrt(n)))
        nlist = max(1, min(int(nlist), n // 39 or 1))  # faiss wants >= 39 points per cell
        self.params["nlist"] = nlist
        index = faiss.IndexIVFFlat(flat, d, nlist, metric)  # the flat index quantises
        index.cp.max_points_per_centroid = 64  # k-means on <= 64 points a cell: 4x faster
        index.train(first)
        self.params["nprobe"] = min(int(self.params["nprobe"] or max(16, nlist // 16)), nlist)
        index.nprobe = self.params["nprobe"]
        index.make_direct_map()  # reconstruct(i): the stored vector of an item
        return index

    def _prepare(self, features: Any) -> np.ndarray:
        feats = _as_features(features)
        if feats.shape[1] != self.dim:
            raise ConfigError(
                f"features have dimension {feats.shape[1]} but the index holds dimension {self.dim}"
            )
        if self.metric == "cosine":
            feats = feats.copy()
            faiss.normalize_L2(feats)
        return feats

    def add(
        self,
        features: Any,
        paths: Sequence[str],
        *,
        pids: Any = None,
        camids: Any = None,
        times: Any = None,
    ) -> int:
        """Append items; returns the id of the first (ids continue from :meth:`__len__`). An
        index bound to a file writes them to it first, in one durable transaction (rows that
        other processes appended meanwhile come first)."""
        feats = self._prepare(features)
        n = feats.shape[0]
        if len(paths) != n:
            raise ConfigError(f"{n} features but {len(paths)} paths")
        rows = (
            feats,
            [str(p) for p in paths],
            _column(pids, n, "pids", np.int64, -1),
            _column(camids, n, "camids", np.int64, -1),
            _column(times, n, "times", np.float64, np.nan),
        )
        if n == 0:
            return len(self)
        if self.file is not None:
            self.file.append(self, rows, self._catch_up)
        first = len(self)
        self._add_rows(*rows)
        return first

    def _add_rows(
        self, feats: np.ndarray, paths: list[str], pids: Any, camids: Any, times: Any
    ) -> None:
        if not len(paths):
            return
        if self.faiss is None:
            self.faiss = self._create(feats)
        self.faiss.add(feats)
        m = self.meta
        m.paths.extend(paths)
        m.pids = np.concatenate([m.pids, pids])
        m.camids = np.concatenate([m.camids, camids])
        m.max_camid = max(m.max_camid, int(np.max(camids, initial=-1)))
        m.times = np.concatenate([m.times, times])

    def _catch_up(self, start: int) -> None:
        assert self.file is not None
        self._add_rows(*self.file.rows(start, self.dim))

    def refresh(self) -> bool:
        """Pick up the rows and header other processes wrote to the file since the last call
        (cheap when there are none); True when something changed."""
        if self.file is None or not self.file.changed():
            return False
        self._catch_up(len(self))
        self.info = self.file.header()["info"]
        return True

    def set_info(self, key: str, value: Any) -> None:
        """Set ``info[key]``, durably in the file when the index is bound to one."""
        self.info[key] = value
        if self.file is not None:
            self.file.set_header("info", self.info)

    def __len__(self) -> int:
        return len(self.meta.paths)

    @property
    def paths(self) -> list[str]:
        return list(self.meta.paths)

    def resolve(self, path: str) -> Path:
        """A stored path as a file: relative paths are relative to the index file's folder."""
        p = Path(path)
        return p if p.is_absolute() or self.file is None else self.file.path.parent / p

    # ------------------------------------------------------------------ searching

    def mask(
        self,
        cameras: Sequence[int] | None = None,
        time_from: float | None = None,
        time_to: float | None = None,
        exclude: int | None = None,
    ) -> np.ndarray | None:
        """The items a filter keeps (0-based ``cameras``, an inclusive time window, one item
        left out), or None for all."""
        if not cameras and time_from is None and time_to is None and exclude is None:
            return None
        m = self.meta
        if cameras:  # a lookup table: 4x faster than np.isin on a million items
            table = np.zeros(max(m.max_camid, 0, *cameras) + 2, bool)
            table[[c for c in cameras if c >= 0]] = True
            keep = table[m.camids]  # camid -1 (unknown) reads the last entry: False
        else:
            keep = np.ones(len(self), bool)
        if time_from is not None:
            keep &= m.times >= time_from
        if time_to is not None:
            keep &= m.times <= time_to
        if exclude is not None and 0 <= exclude < len(self):
            keep[exclude] = False
        return keep

    def count(self, **filters: Any) -> int:
        """How many items :meth:`mask`'s filters keep."""
        keep = self.mask(**filters)
        return len(self) if keep is None else int(keep.sum())

    def search_arrays(
        self, queries: Any, top_k: int = 10, *, offset: int = 0, **filters: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)``, each ``(Q, k)``: results ``offset .. offset + top_k`` of
        the items the filters keep (:meth:`mask`), nearest first; distances as in evaluation
        (``1 - cos`` or squared euclidean); ``-1`` where an approximate index found fewer."""
        positive_int(top_k, "top_k")
        q = self._prepare(queries)
        keep = self.mask(**filters)
        k = min(offset + top_k, len(self) if keep is None else int(keep.sum()))
        if k <= offset:
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        if keep is None:
            scores, idx = self.faiss.search(q, k)
        else:
            bits = np.packbits(keep, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(keep), faiss.swig_ptr(bits))
            index, params = self._filtered(selector, int(keep.sum()))
            scores, idx = index.search(q, k, params=params)
        dist = 1.0 - scores if self.metric == "cosine" else np.maximum(scores, 0)
        return dist[:, offset:].astype(np.float32), idx[:, offset:].astype(np.int64)

    def _filtered(self, selector: Any, kept: int) -> tuple[Any, Any]:
        """The faiss index and parameters of a filtered search. A filter that keeps few items
        (at most :data:`EXACT_FILTER` of them, or a tenth of the gallery) is searched exactly
        — the approximate indexes miss most of the few neighbours it leaves: an ``ivf`` index
        scans every cell (only the kept items' distances are computed), an ``hnsw`` index its
        flat storage — which is also faster than walking a graph of mostly excluded nodes."""
        few = kept <= max(EXACT_FILTER, len(self) // 10)
        if self.kind == "ivf":
            nprobe = self.faiss.nlist if few else self.faiss.nprobe
            return self.faiss, faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        if self.kind == "hnsw" and not few:
            ef = self.faiss.hnsw.efSearch
            return self.faiss, faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
        flat = faiss.downcast_index(self.faiss.storage) if self.kind == "hnsw" else self.faiss
        return flat, faiss.SearchParameters(sel=selector)

    def item(self, i: int) -> SearchHit:
        """Item ``i`` (no rank or distance); ``IndexError`` outside ``0 .. len - 1``."""
        m = self.meta
        if not 0 <= i < len(m.paths):
            raise IndexError(i)
        return SearchHit(i, m.paths[i], int(m.pids[i]), int(m.camids[i]), float(m.times[i]))

    def vector(self, i: int) -> np.ndarray:
        """The stored feature of item ``i`` (as the index holds it: unit norm for cosine)."""
        self.item(i)  # IndexError outside the gallery
        return self.faiss.reconstruct(int(i))

    def search(
        self, queries: Any, top_k: int = 10, *, offset: int = 0, **filters: Any
    ) -> list[list[SearchHit]]:
        """For each query feature, its nearest gallery items ``offset .. offset + top_k``
        (``rank`` counts from 1 at the nearest) among those the filters keep."""
        dist, idx = self.search_arrays(queries, top_k, offset=offset, **filters)
        out = []
        for drow, irow in zip(dist, idx):
            hits = []
            for d, i in zip(drow, irow):
                if i >= 0:  # approximate indexes may return fewer than k
                    hit = self.item(int(i))
                    hit.rank, hit.distance = offset + len(hits) + 1, float(d)
                    hits.append(hit)
            out.append(hits)
        return out

    @property
    def model_file(self) -> str | None:
        """The file of the model the index was built with (as ``info`` records it)."""
        info = self.info
        return info.get("model_file") or info.get("checkpoint") or info.get("onnx")

    def check_model(self, extractor: Any, where: str = "the index") -> None:
        """Refuse a model (a :class:`~attnreid.evaluation.extractor.FeatureExtractor`) whose
        features are not this index's: another model name or dimension, or — a model file
        other than the one the index names — features of a few indexed crops that differ from
        the stored ones (cosine below 0.99: another training of the same network)."""
        name, dim = extractor.model_name, extractor.feature_dim
        given = extractor.source.get("model_file", name)
        if name != self.info.get("model") or dim != self.dim:
            raise CheckpointError(
                f"{given} is model {name!r} (dimension {dim}) but {where} holds features of "
                f"{self.info.get('model')!r} (dimension {self.dim})"
            )
        if given == self.model_file:
            return
        sample = [i for i in range(0, len(self), max(1, len(self) // 4))][:4]
        sample = [i for i in sample if self.resolve(self.meta.paths[i]).is_file()]
        if not sample:
            return
        feats = extractor.extract([str(self.resolve(self.meta.paths[i])) for i in sample])
        mine = self._prepare(feats.features)
        stored = np.stack([self.vector(i) for i in sample])
        cos = (mine * stored).sum(1) / np.maximum(
            np.linalg.norm(mine, axis=1) * np.linalg.norm(stored, axis=1), 1e-12
        )
        if cos.min() < 0.99:
            raise CheckpointError(
                f"{given} gives other features than those {where} holds (cosine {cos.min():.2f} "
                "on indexed crops): it is not the model the index was built with"
            )

    # ------------------------------------------------------------------ files

    def header(self) -> dict[str, Any]:
        return {
            "format": index_file.FORMAT,
            "version": index_file.VERSION,
            "dim": self.dim,
            "metric": self.metric,
            "kind": self.kind,
            "params": self.params,
            "size": len(self),
            "info": self.info,
        }

    def save(self, path: str | Path) -> Path:
        """Write the index as a new file at ``path``, atomically, and bind it to the file."""
        if self.faiss is None:
            raise ConfigError("cannot save an empty gallery index (no image was added)")
        path = Path(path)
        index_file.write(path, self, self.faiss.reconstruct_n(0, len(self)))
        self.file = IndexFile(path)
        self.file.changed()
        return path

    @classmethod
    def load(cls, path: str | Path) -> GalleryIndex:
        """Open an index file (checked whole, see :mod:`attnreid.retrieval.index_file`); the
        index is bound to it."""
        file = IndexFile(path)
        file.check()
        header = file.header()
        params = header["params"]
        unknown = set(params) - {"nlist", "nprobe", "hnsw_m", "ef_search"}
        if unknown:
            raise file._fail(f"unknown index parameters {sorted(unknown)}")
        try:
            index = cls(header["dim"], metric=header["metric"], kind=header["kind"],
                        info=header["info"], **params)  # fmt: skip
        except AttnReidError as exc:
            raise file._fail(str(exc)) from None
        snapshot = file.snapshot()
        if snapshot is not None:
            rows, index.faiss = snapshot
            if index.faiss.d != index.dim or index.faiss.ntotal != rows:
                raise file._fail("the faiss snapshot does not fit the header")
            _, *meta = file.rows(0, index.dim, features=False)
            index.meta = _Meta(meta[0], *meta[1:])
            if len(index) < rows:
                raise file._fail(f"the faiss snapshot has {rows} rows, the file {len(index)}")
            feats = file.rows(rows, index.dim)[0]
            if len(feats):
                index.faiss.add(feats)
        else:
            index._add_rows(*file.rows(0, index.dim))
        index.file = file
        file.changed()
        return index
