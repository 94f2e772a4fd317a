"""The dataset abstraction shared by every loader.

A re-ID dataset is three lists of :class:`ReIDItem` — ``train``, ``query`` and ``gallery`` —
plus the evaluation protocol that fits it. Training identities are relabelled to
``0..N-1`` (the classifier targets); query and gallery keep the identities of the files, so
that Market-1501's distractor identity ``0`` stays distinct from every real identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from attnreid.errors import DatasetError
from attnreid.utils.checks import one_of

EVAL_MODES = ("market", "cuhk03")


@dataclass(frozen=True)
class ReIDItem:
    """One image (or, for video datasets, one tracklet) with its identity and camera.

    ``camid`` is 0-based. ``trackid`` is -1 for still images. ``frames`` lists the frame
    paths of a tracklet (empty for still images, where ``path`` is the image).
    """

    path: str
    pid: int
    camid: int
    trackid: int = -1
    frames: tuple[str, ...] = ()


@dataclass
class ReIDDataset:
    """Train / query / gallery splits of one benchmark, and how to evaluate them."""

    name: str
    root: Path
    train: list[ReIDItem]
    query: list[ReIDItem]
    gallery: list[ReIDItem]
    eval_mode: str = "market"
    info: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        one_of(self.eval_mode, EVAL_MODES, f"{self.name}: eval mode", DatasetError)

    @property
    def num_train_pids(self) -> int:
        return len({it.pid for it in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({it.camid for it in self.train})

    def split(self, name: str) -> list[ReIDItem]:
        return getattr(self, one_of(name, ("train", "query", "gallery"), "split", DatasetError))

    def stats(self) -> dict[str, dict[str, int]]:
        """Identities, images and cameras of each split."""
        out = {}
        for name in ("train", "query", "gallery"):
            items = self.split(name)
            out[name] = {
                "ids": len({it.pid for it in items}),
                "images": len(items),
                "cameras": len({it.camid for it in items}),
            }
        return out

    def summary(self) -> str:
        rows = [f"{self.name} ({self.root})", "  split    | ids   | images | cameras"]
        for name, s in self.stats().items():
            rows.append(f"  {name:<8} | {s['ids']:5d} | {s['images']:6d} | {s['cameras']:7d}")
        return "\n".join(rows)


def validation_split(dataset: ReIDDataset, num_ids: int, seed: int = 0) -> ReIDDataset:
    """The dataset with ``num_ids`` of its training identities (drawn with ``seed``) held out
    as a validation query / gallery, and its training split the other identities (relabelled);
    its test split is never touched. For each held-out identity, its images from its
    lowest-numbered camera are queries and all its other images the gallery: on CUHK01 (camera
    A = 0, B = 1) that is the test protocol itself (query camera A, gallery camera B); on a
    multi-camera set it gives several queries per identity, scored with the same junk rule
    (same identity and camera removed) as the test split. Training identities are
    relabelled ``0..N-1``, so validation identities are kept apart by offsetting them past
    every training label."""
    import numpy as np

    pids = sorted({it.pid for it in dataset.train})
    if not 0 < num_ids < len(pids):
        raise DatasetError(
            f"{dataset.name}: a validation split of {num_ids} identities needs more training "
            f"identities than that (it has {len(pids)})"
        )
    held = {int(p) for p in np.random.default_rng(seed).permutation(pids)[:num_ids]}
    first_cam = {}
    for it in dataset.train:
        if it.pid in held:
            first_cam[it.pid] = min(first_cam.get(it.pid, it.camid), it.camid)
    rest = [it for it in dataset.train if it.pid not in held]
    offset = max(pids) + 1  # validation identities never equal a relabelled training one
    out = [replace(it, pid=it.pid + offset) for it in dataset.train if it.pid in held]
    query = [it for it in out if it.camid == first_cam[it.pid - offset]]
    gallery = [it for it in out if it.camid != first_cam[it.pid - offset]]
    if not gallery:
        raise DatasetError(f"{dataset.name}: the validation identities have one camera only")
    info = {**dataset.info, "validation": {"num_ids": num_ids, "seed": seed}}
    return replace(
        dataset,
        name=f"{dataset.name} (validation)",
        train=relabel(rest),
        query=query,
        gallery=gallery,
        info=info,
    )


def relabel(items: Sequence[ReIDItem]) -> list[ReIDItem]:
    """Map the identities of ``items`` to ``0..N-1`` in sorted order of the original ids."""
    pids = sorted({it.pid for it in items})
    mapping = {pid: i for i, pid in enumerate(pids)}
    return [replace(it, pid=mapping[it.pid]) for it in items]


def check_split(items: Sequence[ReIDItem], dataset: str, split: str, where: Path | str) -> None:
    """Raise :class:`DatasetError` if a split is empty (no images or no identities)."""
    if not items:
        raise DatasetError(f"{dataset}: the {split} split is empty (no images found in {where})")


def require_dir(path: Path, dataset: str, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise an error that lists what is there."""
    if path.is_dir():
        return path
    parent = path.parent
    if parent.is_dir():
        found = sorted(p.name for p in parent.iterdir() if p.is_dir())[:12]
        listing = ", ".join(found) if found else "no sub-folders"
        raise DatasetError(
            f"{dataset}: expected the {what} folder {path} but it does not exist "
            f"({parent} contains: {listing})"
        )
    raise DatasetError(f"{dataset}: dataset folder {parent} does not exist")
