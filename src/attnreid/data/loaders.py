"""Torch datasets and data loaders over :class:`~attnreid.data.base.ReIDItem` lists."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from attnreid.data.base import ReIDItem
from attnreid.data.images import read_image
from attnreid.data.samplers import PKBatchSampler


class ImageDataset(Dataset[dict[str, Any]]):
    """Items -> ``{"image": (3, H, W) float, "pid": int, "camid": int, "index": int}``."""

    def __init__(self, items: Sequence[ReIDItem], transform: Callable[[Any], torch.Tensor]) -> None:
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        it = self.items[index]
        image = self.transform(read_image(it.path))
        return {"image": image, "pid": it.pid, "camid": it.camid, "index": index}


def build_train_loader(
    items: Sequence[ReIDItem],
    transform: Callable[[Any], torch.Tensor],
    *,
    num_identities: int,
    num_instances: int,
    seed: int = 0,
    workers: int = 2,
) -> DataLoader:
    """P x K identity-balanced loader (see :class:`PKBatchSampler`)."""
    sampler = PKBatchSampler([it.pid for it in items], num_identities, num_instances, seed=seed)
    return DataLoader(
        ImageDataset(items, transform),
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
) -> DataLoader:
    """Sequential loader for feature extraction."""
    return DataLoader(
        ImageDataset(items, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
    )
