"""CUHK01 (Li, Zhao, Wang, ACCV 2012) as distributed.

``campus/NNNNCCC.png``: 971 identities x 4 images; ``NNNN`` is the identity (0001..0971),
``CCC`` 001/002 are camera A, 003/004 camera B. Standard protocol: a random split of the
identities into 485 for training and 486 for testing, drawn from ``split_seed`` (report the
mean over several splits); query = the test identities' camera-A images, gallery = their
camera-B images (``query_camera="B"`` swaps them), as in torchreid. Every query has its
matches in the other camera only, so the Market protocol's junk rule removes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from attnreid.data.base import ReIDDataset, ReIDItem, relabel, require_dir
from attnreid.data.datasets.registry import register_dataset
from attnreid.data.images import is_image_file
from attnreid.errors import DatasetError
from attnreid.utils.checks import one_of

CUHK01_PATTERN = re.compile(r"^(\d{4})(\d{3})\.\w+$")


@register_dataset("cuhk01")
def cuhk01(
    root: Path, split_seed: int = 0, num_train_ids: int = 485, query_camera: str = "A"
) -> ReIDDataset:
    """Load CUHK01 from ``root`` (the folder holding ``campus/``, or ``campus`` itself)."""
    campus = root if root.name == "campus" and root.is_dir() else root / "campus"
    require_dir(campus, "cuhk01", "campus")
    one_of(query_camera, ("A", "B"), "cuhk01: query_camera", DatasetError)
    items = []
    for path in sorted(campus.iterdir()):
        if not is_image_file(path.name):
            continue
        m = CUHK01_PATTERN.match(path.name)
        if m is None:
            raise DatasetError(
                f"cuhk01: file name {path} does not match the layout NNNNCCC.png "
                f"(4-digit identity, 3-digit image index)"
            )
        pid, idx = int(m.group(1)), int(m.group(2))
        if idx not in (1, 2, 3, 4):
            raise DatasetError(f"cuhk01: image index must be 001..004 in {path}")
        items.append(ReIDItem(str(path), pid, 0 if idx <= 2 else 1))
    pids = sorted({it.pid for it in items})
    if len(pids) <= num_train_ids:
        raise DatasetError(
            f"cuhk01: {campus} holds {len(pids)} identities, not enough for "
            f"{num_train_ids} training identities plus a test set"
        )
    rng = np.random.default_rng(split_seed)
    train_pids = {int(p) for p in rng.permutation(pids)[:num_train_ids]}
    qcam = 0 if query_camera == "A" else 1
    train = relabel([it for it in items if it.pid in train_pids])
    test = [it for it in items if it.pid not in train_pids]
    query = [it for it in test if it.camid == qcam]
    gallery = [it for it in test if it.camid != qcam]
    info = {"split_seed": split_seed, "query_camera": query_camera}
    return ReIDDataset("cuhk01", root, train, query, gallery, "market", info)
