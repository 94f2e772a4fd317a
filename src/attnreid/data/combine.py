"""Several datasets in one config: training on their union, evaluating on several targets.

A *dataset spec* is a dataset name, or a mapping ``{name, root, options}``; a name alone (or a
mapping without ``root`` / ``options``) takes the config's ``data.root`` / ``data.options``,
so ``data: {dataset: [market1501, dukemtmcreid], root: ~/datasets}`` reads both from one
folder, as torchreid's ``sources`` and fast-reid's ``DATASETS.NAMES`` do, while

.. code-block:: yaml

    data:
      dataset:
        - {name: cuhk01, root: ../shared/data/cuhk01, options: {split_seed: 0}}
        - {name: custom, root: ~/my_crops}

names each one's folder. :func:`combine_datasets` trains on the union: every dataset's
training identities (already ``0..N_i-1``) are shifted past those of the datasets before it,
and so are its cameras, so no two datasets share an identity or a camera. Its query and
gallery are the *first* dataset's (training-time evaluation and the default of ``attnreid
eval``); ``eval.targets`` lists the test sets ``attnreid eval`` scores, one table row each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from attnreid.data.base import ReIDDataset
from attnreid.data.datasets import build_dataset
from attnreid.errors import ConfigError

__all__ = ["DatasetSpec", "combine_datasets", "dataset_specs", "load_specs"]

DatasetSpec = tuple[str, str, dict[str, Any]]  # name, root, options


def dataset_specs(
    value: str | Sequence[Any], root: str, options: Mapping[str, Any], where: str
) -> list[DatasetSpec]:
    """``(name, root, options)`` of each dataset a config value names (see the module
    docstring); ``where`` is the config key, for error messages."""
    items = [value] if isinstance(value, (str, Mapping)) else list(value)
    if not items:
        raise ConfigError(f"{where} names no dataset")
    specs = []
    for item in items:
        if isinstance(item, str):
            specs.append((item, root, dict(options)))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            unknown = sorted(set(item) - {"name", "root", "options"})
            if unknown:
                raise ConfigError(
                    f"{where}: dataset {item['name']!r} has unknown key(s) {', '.join(unknown)} "
                    "(a dataset is a name or {name, root, options})"
                )
            specs.append(
                (item["name"], str(item.get("root", root)), dict(item.get("options", options)))
            )
        else:
            raise ConfigError(
                f"{where}: {item!r} is not a dataset (a name, or a mapping with name, root, "
                "options)"
            )
    return specs


def load_specs(specs: Sequence[DatasetSpec]) -> list[ReIDDataset]:
    return [build_dataset(name, root, **options) for name, root, options in specs]


def combine_datasets(datasets: Sequence[ReIDDataset]) -> ReIDDataset:
    """The union of the datasets' training sets (identities and cameras kept apart) with the
    first dataset's query and gallery; one dataset is returned as it is."""
    if len(datasets) == 1:
        return datasets[0]
    train = []
    pid_offset = cam_offset = 0
    for ds in datasets:
        train += [
            replace(it, pid=it.pid + pid_offset, camid=it.camid + cam_offset) for it in ds.train
        ]
        pid_offset += max((it.pid for it in ds.train), default=-1) + 1
        cam_offset += max((it.camid for it in ds.train), default=-1) + 1
    first = datasets[0]
    return ReIDDataset(
        "+".join(ds.name for ds in datasets),
        first.root,
        train,
        first.query,
        first.gallery,
        first.eval_mode,
        info={"sources": [ds.name for ds in datasets]},
    )
