"""A searchable gallery: features of person crops in a faiss index, with their metadata.

>>> index = GalleryIndex.build(features, paths, metric="cosine")        # doctest: +SKIP
>>> index.add(more_features, more_paths)                                 # doctest: +SKIP
>>> hits = index.search(query_features, top_k=10)[0]                     # doctest: +SKIP
>>> index.save("gallery.index"); GalleryIndex.load("gallery.index")      # doctest: +SKIP

**Metric.** It matches the model's evaluation metric: ``"cosine"`` stores L2-normalised
features in an inner-product index (``distance = 1 - cosine similarity``); ``"euclidean"`` an
L2 index (``distance = squared euclidean``). These are the distances of
:func:`attnreid.utils.distance.compute_distance`, so a search ranks the gallery as
evaluation does. (A model with its own ``compute_distance``, such as DuATM's sequence matching,
is searched with the configured metric on its features: faiss cannot run the model.)

**Kinds.** ``"flat"`` (default) is exact brute force: right for galleries up to a few hundred
thousand crops. For millions of items ``"ivf"`` (inverted lists over ``nlist`` k-means cells,
``nprobe`` of them searched; trained on the first batch of features) and ``"hnsw"`` (a graph
with ``hnsw_m`` links per node, ``ef_search`` candidates) are approximate and much faster.

**Metadata.** Every item keeps its path, identity (``pid``, -1 when unknown), camera
(``camid``, -1 when unknown) and time (``time``, e.g. a frame number or a timestamp; NaN when
unknown). ``info`` holds free-form JSON-able facts, e.g. the model that made the features.

**File.** One ``.npz`` archive (no pickles) holding the serialised faiss index, the metadata
and a JSON header, written atomically: a crash never leaves a half-written index. Loading reads
the whole file (about ``N x D x 4`` bytes for an exact index).
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from attnreid.errors import AttnReidError, CheckpointError, ConfigError, wrong_file
from attnreid.utils.checks import one_of, positive_int
from attnreid.utils.distance import DISTANCE_METRICS
from attnreid.utils.io import atomic_open
from attnreid.utils.safe_load import open_npz

__all__ = ["INDEX_KINDS", "GalleryIndex", "SearchHit"]

INDEX_KINDS = ("flat", "ivf", "hnsw")
FORMAT_VERSION = 1
#: What ``--index`` expects, as the message for another kind of file says it.
INDEX_FILE = "a readable gallery index (a .npz archive written by attnreid index build)"


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


def _as_features(x: Any) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
        raise ConfigError(
            f"a gallery index needs one feature vector per image, (N, D), got shape {a.shape} "
            "(sequence features, such as DuATM's, are compared by the model's own distance)"
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
        nprobe: int = 16,
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
        self._index: Any = None  # created on the first add (IVF is trained on it)

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
        index.train(first)
        index.nprobe = min(int(self.params["nprobe"]), nlist)
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
    ) -> None:
        """Append items (their row numbers continue from :meth:`__len__`)."""
        feats = self._prepare(features)
        n = feats.shape[0]
        if len(paths) != n:
            raise ConfigError(f"{n} features but {len(paths)} paths")
        new_pids = _column(pids, n, "pids", np.int64, -1)
        new_cams = _column(camids, n, "camids", np.int64, -1)
        new_times = _column(times, n, "times", np.float64, np.nan)
        if n == 0:
            return
        if self._index is None:
            self._index = self._create(feats)
        self._index.add(feats)
        m = self.meta
        m.paths.extend(str(p) for p in paths)
        m.pids = np.concatenate([m.pids, new_pids])
        m.camids = np.concatenate([m.camids, new_cams])
        m.times = np.concatenate([m.times, new_times])

    def __len__(self) -> int:
        return len(self.meta.paths)

    @property
    def paths(self) -> list[str]:
        return list(self.meta.paths)

    # ------------------------------------------------------------------ searching

    def search_arrays(self, queries: Any, top_k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)``, each ``(Q, k)``, ``k = min(top_k, len(self))``, nearest
        first; distances as in evaluation (``1 - cos`` or squared euclidean)."""
        positive_int(top_k, "top_k")
        q = self._prepare(queries)
        k = min(top_k, len(self))
        if k == 0:
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        scores, idx = self._index.search(q, k)
        dist = 1.0 - scores if self.metric == "cosine" else np.maximum(scores, 0)
        return dist.astype(np.float32), idx.astype(np.int64)

    def item(self, i: int) -> SearchHit:
        """Item ``i`` (no rank or distance); ``IndexError`` outside ``0 .. len - 1``."""
        m = self.meta
        if not 0 <= i < len(m.paths):
            raise IndexError(i)
        return SearchHit(i, m.paths[i], int(m.pids[i]), int(m.camids[i]), float(m.times[i]))

    def search(self, queries: Any, top_k: int = 10) -> list[list[SearchHit]]:
        """For each query feature, its ``top_k`` nearest gallery items."""
        dist, idx = self.search_arrays(queries, top_k)
        out = []
        for drow, irow in zip(dist, idx):
            hits = []
            for d, i in zip(drow, irow):
                if i >= 0:  # approximate indexes may return fewer than k
                    hit = self.item(int(i))
                    hit.rank, hit.distance = len(hits) + 1, float(d)
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
        features are not this index's: another model name or dimension."""
        name, dim = extractor.model_name, extractor.feature_dim
        if name != self.info.get("model") or dim != self.dim:
            raise CheckpointError(
                f"{extractor.source.get('model_file', name)} is model {name!r} (dimension "
                f"{dim}) but {where} holds features of {self.info.get('model')!r} (dimension "
                f"{self.dim})"
            )

    # ------------------------------------------------------------------ files

    def header(self) -> dict[str, Any]:
        return {
            "format": "attnreid-gallery-index",
            "version": FORMAT_VERSION,
            "dim": self.dim,
            "metric": self.metric,
            "kind": self.kind,
            "params": self.params,
            "size": len(self),
            "info": self.info,
        }

    def save(self, path: str | Path) -> Path:
        """Write the index to ``path`` atomically (one ``.npz`` archive)."""
        if self._index is None:
            raise ConfigError("cannot save an empty gallery index (no image was added)")
        arrays = {
            "header": np.asarray(json.dumps(self.header())),
            "faiss_index": faiss.serialize_index(self._index),
            "paths": np.asarray(self.meta.paths, dtype=np.str_),
            "pids": self.meta.pids,
            "camids": self.meta.camids,
            "times": self.meta.times,
        }
        path = Path(path)
        with atomic_open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GalleryIndex:
        """Read an index written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise AttnReidError(f"gallery index {path} does not exist")
        try:
            with open_npz(path, "gallery index", INDEX_FILE) as data:
                header = json.loads(str(data["header"]))
                raw = data["faiss_index"]
                meta = _Meta(
                    [str(p) for p in data["paths"]],
                    data["pids"].astype(np.int64),
                    data["camids"].astype(np.int64),
                    data["times"].astype(np.float64),
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
            header = None  # a .npz of something else (e.g. features), or a damaged one
        if not isinstance(header, dict) or header.get("format") != "attnreid-gallery-index":
            raise AttnReidError(wrong_file(path, "gallery index", INDEX_FILE))
        params = header.get("params", {})
        index = cls(
            header["dim"],
            metric=header["metric"],
            kind=header["kind"],
            info=header.get("info"),
            **params,
        )
        index._index = faiss.deserialize_index(raw)
        index.meta = meta
        if index._index.ntotal != len(meta.paths):
            raise AttnReidError(
                f"gallery index {path} is inconsistent: {index._index.ntotal} vectors but "
                f"{len(meta.paths)} paths"
            )
        return index
