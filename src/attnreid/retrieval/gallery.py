"""A folder of person crops: its images and their identity, camera and time.

**Metadata of a crop.** From its file name when it follows the Market-1501 convention
(``PPPP_cC[sS_FFFFFF]...``: identity, 1-based camera -> 0-based ``camid``, frame -> ``time``),
else unknown (``pid = camid = -1``, ``time = NaN``). A CSV manifest (``path`` plus any of
``pid``, ``camid``, ``time``; paths relative to the folder) overrides the names, and may list
a subset of the folder: then only its images are used. Its paths must stay inside the folder
unless ``allow_outside_paths`` (:mod:`attnreid.data.manifest`).

Their features come from :class:`~attnreid.evaluation.extractor.FeatureExtractor`
(``attnreid.load(model_file).extract(crops.items())``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnreid.data.base import ReIDItem
from attnreid.data.datasets.market import MARKET_PATTERN as _NAME
from attnreid.data.images import is_image_file
from attnreid.data.manifest import manifest_file
from attnreid.errors import DatasetError

__all__ = ["Crops", "parse_crop_name", "scan_folder"]


@dataclass
class Crops:
    """Images with their identity, camera and time (``-1`` / ``NaN`` when unknown)."""

    paths: list[str]
    pids: np.ndarray
    camids: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def items(self) -> list[ReIDItem]:
        return [ReIDItem(p, int(i), int(c)) for p, i, c in zip(self.paths, self.pids, self.camids)]

    def subset(self, keep: np.ndarray) -> Crops:
        idx = np.flatnonzero(keep)
        return Crops(
            [self.paths[i] for i in idx], self.pids[idx], self.camids[idx], self.times[idx]
        )


def parse_crop_name(name: str) -> tuple[int, int, float]:
    """``(pid, camid, time)`` from a Market-1501-style file name, ``(-1, -1, nan)`` otherwise."""
    m = _NAME.match(Path(name).name)
    if not m:
        return -1, -1, math.nan
    return int(m.group(1)), int(m.group(2)) - 1, float(m.group(3)) if m.group(3) else math.nan


def _read_manifest(
    manifest: Path, folder: Path, allow_outside: bool = False
) -> dict[str, dict[str, str]]:
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DatasetError(f"cannot read manifest {manifest}: {exc}") from None
    if not rows or "path" not in rows[0]:
        raise DatasetError(f"manifest {manifest} needs a 'path' column (and pid, camid, time)")
    out = {}
    for n, row in enumerate(rows, start=2):
        where = f"manifest {manifest} line {n}"
        p = manifest_file(
            row["path"], folder, where, allow_outside=allow_outside, switch="--allow-outside-paths"
        )
        out[str(p.resolve())] = row
    return out


def _number(row: dict[str, str], key: str, cast: Any, where: str) -> Any:
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        return cast(text)
    except ValueError:
        raise DatasetError(f"{where}: {key} must be a number, got {text!r}") from None


def scan_folder(
    folder: str | Path, manifest: str | Path | None = None, *, allow_outside_paths: bool = False
) -> Crops:
    """The images below ``folder`` (recursively, sorted by path) and their metadata; with a
    ``manifest``, the images it lists. ``allow_outside_paths``: accept manifest paths that are
    absolute or leave ``folder`` (:mod:`attnreid.data.manifest`)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    rows = _read_manifest(Path(manifest), root, allow_outside_paths) if manifest else None
    if rows is not None:
        files = sorted(Path(p) for p in rows)
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p.name))
    if not files:
        raise DatasetError(f"no images (.jpg, .png, ...) found in {root}")
    found = []  # (path, pid, camid, time)
    for f in files:
        pid, cam, t = parse_crop_name(f.name)
        if rows is not None:
            row = rows[str(f.resolve())]
            where = f"manifest {manifest} ({f.name})"
            pid = v if (v := _number(row, "pid", int, where)) is not None else pid
            cam = v if (v := _number(row, "camid", int, where)) is not None else cam
            t = v if (v := _number(row, "time", float, where)) is not None else t
        found.append((str(f.resolve()), pid, cam, t))
    paths, pids, camids, times = zip(*found)
    return Crops(
        list(paths), np.asarray(pids, np.int64), np.asarray(camids, np.int64), np.asarray(times)
    )
