"""Market-1501 layout (Zheng et al., ICCV 2015), also written by ``attnreid synth``.

Layout as distributed (``Market-1501-v15.09.15/``)::

    bounding_box_train/  0002_c1s1_000451_03.jpg ...   (751 identities, 12,936 images)
    query/               0001_c1s1_001051_00.jpg ...   (750 identities, 3,368 images)
    bounding_box_test/   0000_c1s1_..., -1_c1s1_...    (19,732 images)

Name: ``PPPP_cCsS_FFFFFF_BB.jpg`` — identity, camera (1-based), sequence, frame, box.
Identity ``-1`` marks junk boxes: they are dropped when loading, as torchreid and fast-reid
do, so they never count as right or wrong. Identity ``0000`` marks distractors: they stay in
the gallery with pid 0, which matches no query. Non-image files (``Thumbs.db``) are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from attnreid.data.base import ReIDDataset, ReIDItem, check_split, relabel, require_dir
from attnreid.data.datasets import register_dataset
from attnreid.data.images import is_image_file
from attnreid.errors import DatasetError

MARKET_PATTERN = re.compile(r"^([-\d]+)_c(\d+)")
MARKET_SUBDIRS = ("bounding_box_train", "query", "bounding_box_test")


def find_root(root: Path, subdirs: tuple[str, ...], candidates: tuple[str, ...], name: str) -> Path:
    """Return the folder holding ``subdirs``: ``root`` itself or one known child of it."""
    if all((root / s).is_dir() for s in subdirs):
        return root
    for child in candidates:
        if all((root / child / s).is_dir() for s in subdirs):
            return root / child
    if not root.is_dir():
        raise DatasetError(f"{name}: dataset folder {root} does not exist")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())[:12]
    missing = [s for s in subdirs if not (root / s).is_dir()]
    raise DatasetError(
        f"{name}: {root} is not a {name} folder: expected sub-folders {', '.join(subdirs)} "
        f"(missing: {', '.join(missing)}; found: {', '.join(found) or 'none'})"
    )


def parse_market_dir(
    folder: Path, name: str, pattern: re.Pattern[str] = MARKET_PATTERN, keep_junk: bool = False
) -> list[ReIDItem]:
    """Items of one Market-style folder; camids become 0-based."""
    items = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not is_image_file(path.name):
            continue
        m = pattern.match(path.name)
        if m is None:
            raise DatasetError(
                f"{name}: file name {path} does not match the layout "
                f"(expected PPPP_cC..., e.g. 0002_c1s1_000451_03.jpg)"
            )
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid == -1 and not keep_junk:
            continue
        if cam < 1:
            raise DatasetError(f"{name}: camera index must start at 1 in {path}")
        items.append(ReIDItem(str(path), pid, cam - 1))
    return items


@register_dataset("market1501")
def market1501(root: Path, keep_junk: bool = False) -> ReIDDataset:
    """Load Market-1501 (or any folder in its layout, e.g. ``attnreid synth`` output)."""
    base = find_root(root, MARKET_SUBDIRS, ("Market-1501-v15.09.15", "market1501"), "market1501")
    splits = {}
    for split, sub in zip(("train", "query", "gallery"), MARKET_SUBDIRS):
        folder = require_dir(base / sub, "market1501", split)
        splits[split] = parse_market_dir(folder, "market1501", keep_junk=keep_junk)
        check_split(splits[split], "market1501", split, folder)
    train = relabel([it for it in splits["train"] if it.pid >= 0])
    return ReIDDataset("market1501", base, train, splits["query"], splits["gallery"], "market")


@register_dataset("synth")
def synth(root: Path) -> ReIDDataset:
    """The embedded synthetic dataset (``attnreid synth``), which uses the Market-1501 layout."""
    ds = market1501(root)
    ds.name = "synth"
    return ds
