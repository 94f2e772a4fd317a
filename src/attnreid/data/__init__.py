"""Datasets, samplers and transforms.

>>> from attnreid.data import build_dataset
>>> ds = build_dataset("market1501", "~/data/Market-1501-v15.09.15")   # doctest: +SKIP
>>> print(ds.summary())                                                # doctest: +SKIP
"""

from attnreid.data.base import ReIDDataset, ReIDItem
from attnreid.data.datasets import build_dataset, list_datasets, register_dataset
from attnreid.data.images import read_image
from attnreid.data.loaders import ImageDataset, build_test_loader, build_train_loader
from attnreid.data.samplers import PKBatchSampler
from attnreid.data.transforms import Cutout, build_transforms

__all__ = [
    "Cutout",
    "ImageDataset",
    "PKBatchSampler",
    "ReIDDataset",
    "ReIDItem",
    "build_dataset",
    "build_test_loader",
    "build_train_loader",
    "build_transforms",
    "list_datasets",
    "read_image",
    "register_dataset",
]
