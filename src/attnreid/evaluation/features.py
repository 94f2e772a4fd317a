"""Feature extraction, and feature files (features + pids / camids / paths in one file).

Test-time flip averaging (``flip=True``) averages the features of each image and of its
horizontal mirror, as SONA-Net, Batch-DropBlock and most re-ID code do. Features are kept
in float32 on the CPU. Feature files are ``.npz`` archives written atomically; they load
with ``allow_pickle=False``.

Video (5-D batches ``(B, T, 3, H, W)`` of tracklet clips, :mod:`attnreid.data.video`): the
frames go through the model as ``(B*T, 3, H, W)`` and a tracklet's feature is the mean of its
frame features over all its clips (tracklet-level evaluation; a batch ``"mask"`` excludes
padding frames). A model with ``handles_video = True`` gets the clips themselves and returns
one ``(B, D)`` feature per clip; clips of one tracklet are averaged, weighted by their real
frames.
"""

from __future__ import annotations

import contextlib
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from attnreid.data.base import ReIDItem
from attnreid.errors import AttnReidError, wrong_file
from attnreid.utils.device import eval_mode
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


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device | str = "cpu",
    flip: bool = True,
    amp: bool | None = None,
) -> FeatureSet:
    """Run ``model`` (in eval mode) over ``loader``; restores the model's previous mode."""
    device = torch.device(device)
    amp = (device.type == "cuda") if amp is None else amp
    feats, pids, camids, indices, weights = [], [], [], [], []
    video = False
    autocast = torch.autocast(device.type, dtype=torch.float16) if amp else contextlib.nullcontext()
    with eval_mode(model):
        for batch in loader:
            x = batch["image"].to(device, non_blocking=True)
            with autocast:
                if x.dim() == 5:
                    video = True
                    f, w = _clip_features(model, x, batch.get("mask"), flip)
                    weights.append(w)
                else:
                    f = flip_forward(model, x, flip)
                    weights.append(torch.ones(len(f)))
            feats.append(f.float().cpu())
            pids.append(batch["pid"])
            camids.append(batch["camid"])
            indices.append(batch["index"])
    items: Sequence[ReIDItem] = loader.dataset.items  # type: ignore[attr-defined]
    index = torch.cat(indices).numpy() if indices else np.zeros(0, dtype=np.int64)
    dim = feats[0].shape[1:] if feats else (0,)
    out = FeatureSet(
        torch.cat(feats) if feats else torch.zeros((0, *dim)),
        torch.cat(pids).numpy().astype(np.int64) if pids else np.zeros(0, np.int64),
        torch.cat(camids).numpy().astype(np.int64) if camids else np.zeros(0, np.int64),
        [items[i].path for i in index],
    )
    return _per_tracklet(out, index, torch.cat(weights)) if video else out


def flip_forward(model: nn.Module, x: Tensor, flip: bool) -> Tensor:
    """``model(x)``, averaged with the features of the mirrored images if ``flip``."""
    f = model(x)
    return (f + model(torch.flip(x, dims=[-1]))) / 2 if flip else f


def _clip_features(
    model: nn.Module, x: Tensor, mask: Tensor | None, flip: bool
) -> tuple[Tensor, Tensor]:
    """Features of clips ``x`` (B, T, 3, H, W): the masked mean over frames (B, D) and the
    number of real frames (B,)."""
    b, t = x.shape[:2]
    m = torch.ones(b, t) if mask is None else mask.float().cpu()
    if getattr(model, "handles_video", False):
        # (B, D): the model consumes the sequence itself
        return flip_forward(model, x, flip), m.sum(1)
    f = flip_forward(model, x.flatten(0, 1), flip)  # frames (B*T, 3, H, W)
    f = f.float().view(b, t, -1)  # (B, T, D)
    w = m.to(f.device)
    return (f * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1), m.sum(1)


def _per_tracklet(fs: FeatureSet, index: np.ndarray, weights: Tensor) -> FeatureSet:
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
