"""MSMT17 (Wei, Zhang, Gao, Tian, CVPR 2018), versions V1 and V2.

Layout as distributed (``MSMT17_V1/``; ``root`` may be that folder or hold it, or torchreid's
``msmt17/MSMT17_V1/``)::

    train/0000/0000_000_01_0303morning_0015_0.jpg ...     V2: mask_train_v2/
    test/0000/0000_000_01_0303morning_0008_0.jpg ...      V2: mask_test_v2/
    list_train.txt   "0000/0000_000_01_0303morning_0015_0.jpg 0" per line (path, identity)
    list_val.txt     a held-out part of the training images (same identities)
    list_query.txt   list_gallery.txt   (paths relative to test/)

The camera is the third ``_`` field of the file name (1..15). The published training set is
``list_train`` + ``list_val`` (1,041 identities, 32,621 images); that is the default here
(``include_val=True``). torchreid trains on ``list_train`` alone (30,248 images) unless asked
to combine: ``include_val=False`` reproduces that. Test identities keep their labels of
``list_query`` / ``list_gallery`` (3,060 identities, 11,659 query and 82,161 gallery images).
"""

from __future__ import annotations

from pathlib import Path

from attnreid.data.base import ReIDDataset, ReIDItem, check_split, relabel
from attnreid.data.datasets.registry import register_dataset
from attnreid.errors import DatasetError

VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")


def _locate(root: Path) -> tuple[Path, str, str, str]:
    """(base folder, version, train folder, test folder)."""
    candidates = [root, *(root / v for v in VERSIONS), *(root / "msmt17" / v for v in VERSIONS)]
    for base in candidates:
        for version, (tr, te) in VERSIONS.items():
            if (base / tr).is_dir() and (base / te).is_dir():
                return base, version, tr, te
    if not root.is_dir():
        raise DatasetError(f"msmt17: dataset folder {root} does not exist")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())[:12]
    raise DatasetError(
        f"msmt17: {root} is not an MSMT17 folder: expected sub-folders train/ + test/ (V1) or "
        f"mask_train_v2/ + mask_test_v2/ (V2), in it or in MSMT17_V1/ or MSMT17_V2/ "
        f"(found: {', '.join(found) or 'none'})"
    )


def read_list(list_path: Path, image_dir: Path) -> list[ReIDItem]:
    """Items of one ``list_*.txt``; camids become 0-based."""
    if not list_path.is_file():
        raise DatasetError(f"msmt17: missing split file {list_path}")
    items = []
    with open(list_path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split()
            try:
                rel, pid = parts[0], int(parts[1])
                cam = int(Path(rel).name.split("_")[2])
            except (IndexError, ValueError):
                raise DatasetError(
                    f"msmt17: {list_path} line {line_no}: {line!r} does not parse as "
                    f"'PPPP/PPPP_NNN_CC_....jpg PID'"
                ) from None
            if not 1 <= cam <= 15:
                raise DatasetError(
                    f"msmt17: {list_path} line {line_no}: camera {cam} of {rel} is not in 1..15"
                )
            items.append(ReIDItem(str(image_dir / rel), pid, cam - 1))
    if items and not Path(items[0].path).is_file():
        raise DatasetError(
            f"msmt17: {list_path} lists {items[0].path}, which does not exist (is the list "
            f"from another version of MSMT17?)"
        )
    return items


@register_dataset("msmt17")
def msmt17(root: Path, include_val: bool = True) -> ReIDDataset:
    """Load MSMT17 V1 or V2 from ``root``."""
    base, version, tr, te = _locate(root)
    lists = {name: base / name for name in LISTS}
    train = read_list(lists["list_train.txt"], base / tr)
    val = read_list(lists["list_val.txt"], base / tr) if include_val else []
    query = read_list(lists["list_query.txt"], base / te)
    gallery = read_list(lists["list_gallery.txt"], base / te)
    for split, items in (("train", train), ("query", query), ("gallery", gallery)):
        check_split(items, "msmt17", split, lists[f"list_{split}.txt"])
    info = {"version": version, "include_val": include_val, "num_val_images": len(val)}
    return ReIDDataset("msmt17", base, relabel(train + val), query, gallery, "market", info)
