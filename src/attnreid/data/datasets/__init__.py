"""Dataset loaders and their registry.

``build_dataset(name, root, **options)`` returns a :class:`~attnreid.data.base.ReIDDataset`.
Each loader reads the layout as its owners distribute it and raises
:class:`~attnreid.errors.DatasetError` with the file or folder at fault when it does not fit.
Loaders register themselves (:func:`~attnreid.data.datasets.registry.register_dataset`) when
this package imports them.
"""

from attnreid.data.datasets import cuhk01, cuhk03, custom, dukemtmc, market, mars, msmt17
from attnreid.data.datasets.registry import build_dataset, list_datasets, register_dataset

__all__ = [
    "build_dataset",
    "cuhk01",
    "cuhk03",
    "custom",
    "dukemtmc",
    "list_datasets",
    "market",
    "mars",
    "msmt17",
    "register_dataset",
]
