"""Feature sets (features + pids / camids / paths) and feature files.

Features are extracted by :class:`~attnreid.evaluation.extractor.FeatureExtractor` and kept in
float32 on the CPU. Feature files are ``.npz`` archives written atomically; they load with
``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attnreid.errors import AttnReidError, wrong_file
from attnreid.utils.io import atomic_open
from attnreid.utils.safe_load import open_npz

#: What ``--features`` expects, as the message for another kind of file says it.
FEATURE_FILE = "a readable feature file (a .npz archive written by attnreid extract)"


@dataclass
class FeatureSet:
    """Features of a list of items, with their identities, cameras and paths."""

    features: Tensor  # (N, D) float32
    pids: np.ndarray  # (N,) int64
    camids: np.ndarray  # (N,) int64
    paths: list[str]

    def __len__(self) -> int:
        return len(self.pids)

    def subset(self, index: np.ndarray | slice) -> FeatureSet:
        idx = np.arange(len(self))[index]
        return FeatureSet(
            self.features[torch.from_numpy(idx)],
            self.pids[idx],
            self.camids[idx],
            [self.paths[i] for i in idx],
        )


def per_tracklet(fs: FeatureSet, index: np.ndarray, weights: Tensor) -> FeatureSet:
    """Merge the rows of one item (the clips of a tracklet): the weighted mean feature."""
    uniq, first, inverse = np.unique(index, return_index=True, return_inverse=True)
    order = np.argsort(first)  # items in the order the loader gave them
    inv = torch.from_numpy(inverse.astype(np.int64))
    w = weights.float()
    sums = torch.zeros(len(uniq), fs.features.shape[1]).index_add_(0, inv, fs.features * w[:, None])
    total = torch.zeros(len(uniq)).index_add_(0, inv, w)
    feats = sums / total.clamp_min(1e-12)[:, None]
    keep = first[order]  # the metadata of each item's first row (no copy of its features)
    paths = [fs.paths[i] for i in keep]
    return FeatureSet(feats[torch.from_numpy(order)], fs.pids[keep], fs.camids[keep], paths)


def save_features(path: str | Path, query: FeatureSet, gallery: FeatureSet | None = None) -> Path:
    """Write one ``.npz`` holding the query (and gallery) features and their metadata."""
    arrays: dict[str, np.ndarray] = {}
    for name, fs in (("query", query), ("gallery", gallery)):
        if fs is None:
            continue
        arrays[f"{name}_features"] = fs.features.numpy()
        arrays[f"{name}_pids"] = fs.pids
        arrays[f"{name}_camids"] = fs.camids
        arrays[f"{name}_paths"] = np.asarray(fs.paths, dtype=np.str_)
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def load_features(path: str | Path) -> dict[str, FeatureSet]:
    """Read a file written by :func:`save_features`; checks rows against metadata."""
    path = Path(path)
    if not path.is_file():
        raise AttnReidError(f"feature file {path} does not exist")
    data = open_npz(path, "feature file", FEATURE_FILE)
    out = {}
    with data:
        for name in ("query", "gallery"):
            if f"{name}_features" not in data:
                continue
            keys = [f"{name}_{k}" for k in ("features", "pids", "camids", "paths")]
            missing = [k for k in keys if k not in data]
            if missing:
                raise AttnReidError(f"feature file {path} lacks {', '.join(missing)}")
            try:
                feats, pids, camids, paths = (data[k] for k in keys)
            except ValueError:  # an object array: numpy refuses to unpickle it
                raise AttnReidError(
                    f"feature file {path} was refused: its {name} arrays hold pickled objects, "
                    f"and loading them could run code"
                ) from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error):  # a damaged archive
                raise AttnReidError(wrong_file(path, "feature file", FEATURE_FILE)) from None
            if not len(feats) == len(pids) == len(camids) == len(paths):
                raise AttnReidError(
                    f"feature file {path}: {name} has {len(feats)} feature rows but "
                    f"{len(pids)} pids, {len(camids)} camids and {len(paths)} paths"
                )
            out[name] = FeatureSet(
                torch.from_numpy(feats.astype(np.float32)),
                pids.astype(np.int64),
                camids.astype(np.int64),
                [str(p) for p in paths],
            )
    if not out:
        raise AttnReidError(f"feature file {path} holds no query_features or gallery_features")
    return out
