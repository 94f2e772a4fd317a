"""Torch datasets and data loaders over :class:`~attnreid.data.base.ReIDItem` lists.

Items with ``frames`` (tracklets) get the video dataset of :mod:`attnreid.data.video`;
``build_train_loader`` / ``build_test_loader`` choose it by themselves.

Unreadable images: by default the error names the file. With ``skip_bad=True`` (training,
``data.skip_bad_images``) an item whose image (or any frame) cannot be read is replaced by the
next readable item of the same identity, and the sample carries ``"replaced"``: the path of the
unreadable file ("" when nothing was replaced), so that the training loop can count them
across worker processes (:class:`attnreid.engine.skipped.SkippedImages`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from attnreid.data.base import ReIDItem
from attnreid.data.images import SameIdentityFallback, read_checked
from attnreid.data.samplers import PKBatchSampler
from attnreid.data.video import VideoDataset


class ImageDataset(SameIdentityFallback, Dataset[dict[str, Any]]):
    """Items -> ``{"image": (3, H, W) float, "pid": int, "camid": int, "index": int}``
    (plus ``"replaced"`` with ``skip_bad``)."""

    def __init__(
        self,
        items: Sequence[ReIDItem],
        transform: Callable[[Any], torch.Tensor],
        skip_bad: bool = False,
    ) -> None:
        self.items = list(items)
        self.transform = transform
        self._init_fallback(skip_bad)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, index, bad = self.load_or_replace(index, lambda i: read_checked(self.items[i].path))
        it = self.items[index]
        out = {"image": self.transform(img), "pid": it.pid, "camid": it.camid, "index": index}
        if self.skip_bad:
            out["replaced"] = bad
        return out


def has_frames(items: Sequence[ReIDItem]) -> bool:
    """True for tracklets (video datasets)."""
    return bool(items) and bool(items[0].frames)


def build_train_loader(
    items: Sequence[ReIDItem],
    transform: Callable[[Any], torch.Tensor],
    *,
    num_identities: int,
    num_instances: int,
    seed: int = 0,
    workers: int = 2,
    seq_len: int = 4,
    skip_bad: bool = False,
) -> DataLoader:
    """P x K identity-balanced loader (see :class:`PKBatchSampler`); for tracklets, each
    sample is ``seq_len`` consecutive frames from a random start."""
    sampler = PKBatchSampler([it.pid for it in items], num_identities, num_instances, seed=seed)
    if has_frames(items):
        dataset: Dataset = VideoDataset(
            items, transform, seq_len=seq_len, sampler="random", skip_bad=skip_bad
        )
    else:
        dataset = ImageDataset(items, transform, skip_bad=skip_bad)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )


def build_test_loader(
    items: Sequence[ReIDItem],
    transform: Callable[[Any], torch.Tensor],
    *,
    batch_size: int = 128,
    workers: int = 2,
    seq_len: int = 4,
    test_frames: str = "all",
) -> DataLoader:
    """Sequential loader for feature extraction. For tracklets: ``test_frames="all"`` (every
    frame, in chunks of ``seq_len``), ``"evenly"`` (``seq_len`` evenly spaced frames) or
    ``"first"`` (the first ``seq_len`` consecutive frames, looped), and
    ``batch_size`` counts frames (``batch_size // seq_len`` tracklet chunks per batch)."""
    if has_frames(items):
        dataset: Dataset = VideoDataset(items, transform, seq_len=seq_len, sampler=test_frames)
        batch_size = max(1, batch_size // seq_len)
    else:
        dataset = ImageDataset(items, transform)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
    )
