"""Market-1501 layout (Zheng et al., ICCV 2015), also written by ``attnreid synth``.

Layout as distributed (``Market-1501-v15.09.15/``)::

    bounding_box_train/  0002_c1s1_000451_03.jpg ...   (751 identities, 12,936 images)
    query/               0001_c1s1_001051_00.jpg ...   (750 identities, 3,368 images)
    bounding_box_test/   0000_c1s1_..., -1_c1s1_...    (19,732 images)

Name: ``PPPP_cCsS_FFFFFF_BB.jpg`` — identity, camera (1-based), sequence, frame, box.
Identity ``-1`` marks junk boxes: they are dropped when loading, as torchreid and fast-reid
do, so they never count as right or wrong. Identity ``0000`` marks distractors: they stay in
the gallery with pid 0, which matches no query. Non-image files (``Thumbs.db``) are ignored.

Market-1501+500k: with ``distractors_500k=True`` the images of the distractor set
(``distractors_500k.zip``, extracted into the dataset folder as ``images/``, the folder
torchreid reads; ``distractors_dir`` names another one) are added to the gallery. They are
parsed like every Market-1501 file (``PPPP_cC...``) and keep the identity of their name, as in
torchreid.

The loader records the junk images it dropped per split in ``info["junk"]`` so that
``attnreid data stats`` can compare the folder with the published counts, which include them
(gallery: 19,732 files = 15,913 kept + 3,819 junk).
"""

from __future__ import annotations

import re
from pathlib import Path

from attnreid.data.base import ReIDDataset, ReIDItem, check_split, relabel, require_dir
from attnreid.data.datasets.registry import register_dataset
from attnreid.data.images import is_image_file
from attnreid.errors import DatasetError

#: A Market-1501 file name ``PPPP_cC[sS_FFFFFF]...``: identity (``-1`` junk), camera (1-based)
#: and, when the name has the sequence part, the frame (DukeMTMC-reID's ``PPPP_cC_fFFFFFFF``
#: fits too, without a frame). The one definition: gallery crops are named the same way.
MARKET_PATTERN = re.compile(r"^(-?\d+)_c(\d+)(?:s\d+_(\d+))?")
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
    if root.name in subdirs and all((root.parent / s).is_dir() for s in subdirs):
        raise DatasetError(
            f"{name}: {root} is the {root.name} folder of a {name} dataset, one level too "
            f"low: point the dataset root (data.root) at {root.parent}"
        )
    deeper = sorted(
        p for p in root.iterdir() if p.is_dir() and all((p / s).is_dir() for s in subdirs)
    )
    if deeper:
        raise DatasetError(
            f"{name}: {root} holds the dataset one level down, in {deeper[0].name}/: point the "
            f"dataset root (data.root) at {deeper[0]}"
        )
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


def load_market_layout(
    base: Path, name: str, subdirs: tuple[str, str, str] = MARKET_SUBDIRS, keep_junk: bool = False
) -> tuple[list[ReIDItem], list[ReIDItem], list[ReIDItem], dict[str, int]]:
    """Train (relabelled), query and gallery of a folder in the Market-1501 layout, and the
    number of junk images (identity -1) dropped per split."""
    splits, junk = {}, {}
    for split, sub in zip(("train", "query", "gallery"), subdirs):
        folder = require_dir(base / sub, name, split)
        items = parse_market_dir(folder, name, keep_junk=True)
        junk[split] = sum(it.pid == -1 for it in items)
        splits[split] = items if keep_junk else [it for it in items if it.pid != -1]
        check_split(splits[split], name, split, folder)
    train = relabel([it for it in splits["train"] if it.pid >= 0])
    return train, splits["query"], splits["gallery"], {k: v for k, v in junk.items() if v}


@register_dataset("market1501")
def market1501(
    root: Path,
    keep_junk: bool = False,
    distractors_500k: bool = False,
    distractors_dir: str = "images",
) -> ReIDDataset:
    """Load Market-1501 (or any folder in its layout, e.g. ``attnreid synth`` output)."""
    base = find_root(root, MARKET_SUBDIRS, ("Market-1501-v15.09.15", "market1501"), "market1501")
    train, query, gallery, junk = load_market_layout(base, "market1501", keep_junk=keep_junk)
    info: dict[str, object] = {"junk": junk, "distractors_500k": distractors_500k}
    if distractors_500k:
        folder = require_dir(base / distractors_dir, "market1501", "500k distractor")
        extra = parse_market_dir(folder, "market1501", keep_junk=keep_junk)
        check_split(extra, "market1501", "500k distractor", folder)
        gallery = gallery + extra
        info["num_distractors_500k"] = len(extra)
    return ReIDDataset("market1501", base, train, query, gallery, "market", info)


@register_dataset("synth")
def synth(root: Path) -> ReIDDataset:
    """The embedded synthetic dataset (``attnreid synth``), which uses the Market-1501 layout."""
    ds = market1501(root)
    ds.name = "synth"
    return ds
