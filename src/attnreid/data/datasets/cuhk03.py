"""CUHK03 (Li, Zhao, Xiao, Wang, CVPR 2014): new protocol (Zhong et al., CVPR 2017) and classic.

Two layouts are accepted under ``root``:

**Raw release** (torchreid's layout)::

    cuhk03_release/cuhk-03.mat                      MATLAB v7.3; images extracted once to
    images_labeled/, images_detected/               P_III_V_NN.png (see cuhk03_extract)
    cuhk03_new_protocol_config_labeled.mat          new-protocol split files (MATLAB v5:
    cuhk03_new_protocol_config_detected.mat         filelist, labels, camId, *_idx 1-based)

The images are extracted from ``cuhk-03.mat`` automatically when their folder is missing
(or with ``attnreid data prepare cuhk03 --root DIR``), into ``cache_dir`` (default ``root``).
The split files may also lie in ``cuhk03_release/`` or be given with ``split_file``.

**CUHK03-NP** (Zhong et al.'s re-packaging; ``root`` is ``cuhk03-np/`` or holds it)::

    labeled/{bounding_box_train,query,bounding_box_test}/0001_c1_1.png ...
    detected/{bounding_box_train,query,bounding_box_test}/...

Options: ``images`` = ``labeled`` | ``detected``; ``protocol`` = ``new`` (767 training / 700
test identities; labeled 7,368 / 1,400 / 5,328 images, detected 7,365 / 1,400 / 5,332;
Market-style evaluation) or ``classic`` (Li et al.'s 20 random splits, 1,367 training / 100
test identities, ``split_id`` 0..19, needs ``cuhk-03.mat``; CUHK03 single-gallery-shot
evaluation). As in torchreid, the classic query and gallery are both the whole test set (the
same-camera rule removes each query from its own ranking), and cameras are the two views of a
camera pair (``camId`` of the split files, 0/1): identities never span pairs, so this gives the
same evaluation as numbering the ten cameras. Identities are the split files' ``labels``
(1..1,467, in the order of (camera pair, identity)); the classic protocol numbers them the
same way. ``check_images=False`` skips checking that the listed images exist (to read the
statistics of split files alone).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from attnreid.data.base import ReIDDataset, ReIDItem, check_split, relabel
from attnreid.data.datasets.cuhk03_extract import KINDS, extract_images, read_testsets
from attnreid.data.datasets.market import MARKET_SUBDIRS, load_market_layout
from attnreid.data.datasets.registry import register_dataset
from attnreid.errors import DatasetError
from attnreid.utils.checks import one_of

CUHK03_NAME = re.compile(r"^(\d)_(\d{3})_([12])_(\d{2})\.png$")
SPLIT_FIELDS = ("filelist", "labels", "camId", "train_idx", "query_idx", "gallery_idx")


def find_np_layout(root: Path, images: str) -> Path | None:
    """The folder of the CUHK03-NP ``images`` variant, if ``root`` is in that layout (``root``
    may also be the variant's folder itself)."""
    for cand in (root / images, root / "cuhk03-np" / images, root):
        if all((cand / s).is_dir() for s in MARKET_SUBDIRS):
            other = KINDS[1 - KINDS.index(images)]
            if cand == root and root.name.lower() == other:
                raise DatasetError(
                    f"cuhk03: {root} holds the CUHK03-NP {other} images but the images option "
                    f"asks for {images!r}; point the root at its parent folder"
                )
            return cand
    return None


def _first_file(candidates: list[Path]) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def _found(root: Path) -> str:
    if not root.is_dir():
        return "the folder does not exist"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:12]
    return ", ".join(names) or "nothing"


def load_new_split(split_file: Path, image_dir: Path, check_images: bool) -> dict[str, list]:
    """Train / query / gallery of a ``cuhk03_new_protocol_config_*.mat`` file."""
    from scipy.io import loadmat

    try:
        mat = loadmat(split_file)
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError...
        raise DatasetError(f"cuhk03: cannot read split file {split_file}: {exc}") from None
    missing = [f for f in SPLIT_FIELDS if f not in mat]
    if missing:
        raise DatasetError(
            f"cuhk03: split file {split_file} lacks the field(s) {', '.join(missing)}"
        )
    names = [str(np.asarray(x).ravel()[0]) for x in np.asarray(mat["filelist"]).ravel()]
    labels = np.asarray(mat["labels"]).ravel().astype(np.int64)
    cams = np.asarray(mat["camId"]).ravel().astype(np.int64)
    if not len(names) == len(labels) == len(cams):
        raise DatasetError(
            f"cuhk03: split file {split_file}: filelist, labels and camId differ in length "
            f"({len(names)}, {len(labels)}, {len(cams)})"
        )
    for name in names:
        if CUHK03_NAME.match(name) is None:
            raise DatasetError(
                f"cuhk03: split file {split_file} lists {name!r}, which is not a CUHK03 image "
                f"name P_III_V_NN.png"
            )
    if check_images:
        absent = [n for n in names if not (image_dir / n).is_file()]
        if absent:
            raise DatasetError(
                f"cuhk03: {len(absent)} of the {len(names)} images listed in {split_file} are "
                f"missing from {image_dir}, e.g. {image_dir / absent[0]}"
            )
    out: dict[str, list] = {}
    for split in ("train", "query", "gallery"):
        idx = np.asarray(mat[f"{split}_idx"]).ravel().astype(np.int64) - 1
        if len(idx) and (idx.min() < 0 or idx.max() >= len(names)):
            raise DatasetError(
                f"cuhk03: split file {split_file}: {split}_idx holds indices outside "
                f"1..{len(names)}"
            )
        out[split] = [
            ReIDItem(str(image_dir / names[i]), int(labels[i]), int(cams[i]) - 1) for i in idx
        ]
    return out


def classic_split(image_dir: Path, test_set: set[tuple[int, int]]) -> dict[str, list]:
    """Train (all identities not in ``test_set``) and test items from an extracted folder."""
    parsed = []
    for path in sorted(image_dir.iterdir()):
        if path.suffix.lower() != ".png" or path.name.startswith("."):
            continue
        m = CUHK03_NAME.match(path.name)
        if m is None:
            raise DatasetError(f"cuhk03: file name {path} does not match P_III_V_NN.png")
        parsed.append(((int(m.group(1)), int(m.group(2))), int(m.group(3)) - 1, str(path)))
    keys = sorted({k for k, _, _ in parsed})
    label = {k: i + 1 for i, k in enumerate(keys)}
    unknown = test_set - set(keys)
    if unknown:
        raise DatasetError(
            f"cuhk03: {image_dir} has no images of {len(unknown)} classic test identities "
            f"(camera pair, identity), e.g. {sorted(unknown)[0]}"
        )
    train = [ReIDItem(p, label[k], cam) for k, cam, p in parsed if k not in test_set]
    test = [ReIDItem(p, label[k], cam) for k, cam, p in parsed if k in test_set]
    return {"train": train, "query": test, "gallery": list(test)}


@register_dataset("cuhk03")
def cuhk03(
    root: Path,
    images: str = "labeled",
    protocol: str = "new",
    split_id: int = 0,
    split_file: str | None = None,
    cache_dir: str | None = None,
    check_images: bool = True,
) -> ReIDDataset:
    """Load CUHK03 (see the module docstring for layouts and options)."""
    one_of(images, KINDS, "cuhk03: images", DatasetError)
    one_of(protocol, ("new", "classic"), "cuhk03: protocol", DatasetError)
    if not root.is_dir():
        raise DatasetError(f"cuhk03: dataset folder {root} does not exist")
    info: dict[str, object] = {"images": images, "protocol": protocol}
    np_base = find_np_layout(root, images)
    if np_base is not None and split_file is None:
        if protocol == "classic":
            raise DatasetError(
                f"cuhk03: {np_base} is the CUHK03-NP layout (new protocol only); the classic "
                f"protocol needs the raw release cuhk03_release/cuhk-03.mat"
            )
        train, query, gallery, _ = load_market_layout(np_base, "cuhk03")
        info["layout"] = "cuhk03-np"
        return ReIDDataset("cuhk03", np_base, train, query, gallery, "market", info)

    cache = Path(cache_dir).expanduser() if cache_dir else root
    image_dir = cache / f"images_{images}"
    raw = _first_file([root / "cuhk03_release" / "cuhk-03.mat", root / "cuhk-03.mat"])
    if not image_dir.is_dir() and raw is not None:
        print(f"cuhk03: extracting the {images} images of {raw} to {image_dir}", file=sys.stderr)
        image_dir, _ = extract_images(raw, images, cache)
    info["layout"] = "raw"
    if protocol == "new":
        name = f"cuhk03_new_protocol_config_{images}.mat"
        split = (
            Path(split_file).expanduser()
            if split_file
            else _first_file([root / name, root / "cuhk03_release" / name])
        )
        if split is None or not split.is_file():
            raise DatasetError(
                f"cuhk03: missing split file {split or root / name} (expected in {root} or "
                f"{root / 'cuhk03_release'}, or the CUHK03-NP folders {images}/bounding_box_train "
                f"...; found: {_found(root)})"
            )
        if check_images and not image_dir.is_dir():
            raise DatasetError(
                f"cuhk03: expected the extracted images in {image_dir} or the raw release "
                f"{root / 'cuhk03_release' / 'cuhk-03.mat'} to extract them from "
                f"(found in {root}: {_found(root)})"
            )
        splits = load_new_split(split, image_dir, check_images)
        info["split_file"] = str(split)
        eval_mode = "market"
    else:
        if raw is None:
            raise DatasetError(
                f"cuhk03: the classic protocol needs {root / 'cuhk03_release' / 'cuhk-03.mat'} "
                f"(its 20 test sets; found in {root}: {_found(root)})"
            )
        if not image_dir.is_dir():
            raise DatasetError(f"cuhk03: the extracted images folder {image_dir} does not exist")
        test_sets = read_testsets(raw)
        if not 0 <= split_id < len(test_sets):
            raise DatasetError(
                f"cuhk03: split_id must be in 0..{len(test_sets) - 1}, got {split_id}"
            )
        splits = classic_split(image_dir, test_sets[split_id])
        info["split_id"] = split_id
        eval_mode = "cuhk03"
    for s in ("train", "query", "gallery"):
        check_split(splits[s], "cuhk03", s, image_dir)
    return ReIDDataset(
        "cuhk03",
        root,
        relabel(splits["train"]),
        splits["query"],
        splits["gallery"],
        eval_mode,
        info,
    )
