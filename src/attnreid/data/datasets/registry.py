"""The registry of dataset loaders.

``build_dataset(name, root, **options)`` returns a :class:`~attnreid.data.base.ReIDDataset`.
Each loader reads the layout as its owners distribute it and raises
:class:`~attnreid.errors.DatasetError` with the file or folder at fault when it does not fit.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnreid.data.base import ReIDDataset
from attnreid.errors import ConfigError
from attnreid.utils.checks import did_you_mean

DatasetFactory = Callable[..., ReIDDataset]
_DATASETS: dict[str, DatasetFactory] = {}


def register_dataset(name: str) -> Callable[[DatasetFactory], DatasetFactory]:
    """Decorator: register a loader ``fn(root, **options) -> ReIDDataset`` under ``name``."""

    def deco(fn: DatasetFactory) -> DatasetFactory:
        _DATASETS[name] = fn
        return fn

    return deco


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def build_dataset(name: str, root: str | Path, **options: Any) -> ReIDDataset:
    """Load dataset ``name`` from ``root`` (see :func:`list_datasets`)."""
    key = name.lower().replace("-", "").replace("_", "")
    lookup = {n.replace("_", ""): n for n in _DATASETS}
    if key not in lookup:  # (no registered name has an underscore: the keys are the names)
        raise ConfigError(
            f"unknown dataset {name!r}{did_you_mean(key, lookup)} "
            f"(available: {', '.join(list_datasets())})"
        )
    fn = _DATASETS[lookup[key]]
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [p for p in params if p != "root"]
        for opt in options:
            if opt not in allowed:
                raise ConfigError(
                    f"dataset {lookup[key]!r} has no option {opt!r} "
                    f"(options: {', '.join(allowed) or 'none'})"
                )
    return fn(Path(root).expanduser(), **options)
