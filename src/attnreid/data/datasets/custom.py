"""Custom data: a folder per identity, or a CSV manifest.

**Folder format** (``build_dataset("custom", root)``)::

    root/train/<identity>/<camera>_<anything>.jpg
    root/query/<identity>/...
    root/gallery/<identity>/...

Identity folder names are integers, or any names (then numbered in sorted order, shared by
query and gallery). The camera is read from the file name with ``camera_regex`` (first group;
default: leading digits, optionally after a ``c``: ``c1_...``, ``01_3.png``, ``3-x.jpg``).
With ``camera_regex=None`` there is no camera information: train and query images get camera
0, gallery images camera 1, so the same-camera junk rule never removes anything.
A single ``test`` folder may replace ``query`` + ``gallery``: then, per identity and camera,
the first ``query_per_camera`` images (in sorted name order) form the query set and the rest
the gallery. Sub-folder names can be changed with ``train_dir``, ``query_dir``,
``gallery_dir``, ``test_dir`` (paths relative to ``root``). Files are decoded by content, so
JPEG data in a ``.png`` file loads.

**CSV manifest** (``root`` is a ``.csv`` file, or a folder holding ``manifest.csv``)::

    path,pid,camid,split
    images/0001_a.jpg,1,0,train
    images/0007_b.jpg,7,1,query
    images/0007_c.jpg,7,0,gallery

Required columns ``path`` (relative to the CSV's folder), ``pid`` and ``camid`` (integers),
``split`` (``train``, ``query`` or ``gallery``); optional ``trackid``. Every row is checked when
the manifest is read: its image must exist (else the error names the manifest, the line and the
path).

Absolute paths and paths that leave the CSV's folder (``../../x.jpg``) are refused by default,
and allowed with the option ``allow_outside_paths: true`` (``data.options`` in a config,
``--option allow_outside_paths=true`` for ``attnreid data stats``). The reason: a manifest from
elsewhere must not make the program read arbitrary files of this machine; who trusts it says so.
The check is on the path as written, so symbolic links inside the folder are followed
(:mod:`attnreid.data.manifest`, shared with ``attnreid index build --manifest``).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

from attnreid.data.base import ReIDDataset, ReIDItem, check_split, relabel
from attnreid.data.datasets.registry import register_dataset
from attnreid.data.images import is_image_file
from attnreid.data.manifest import manifest_file
from attnreid.errors import DatasetError

DEFAULT_CAMERA_REGEX = r"^c?(\d+)"
MANIFEST_COLUMNS = ("path", "pid", "camid", "split")
OPTIONAL_COLUMNS = ("trackid",)


def _identity_dirs(folder: Path) -> list[Path]:
    dirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if not dirs:
        raise DatasetError(f"custom: {folder} holds no identity sub-folders (<identity>/<image>)")
    return dirs


def _pid_map(names: list[str]) -> dict[str, int]:
    if all(n.lstrip("-").isdigit() for n in names):
        return {n: int(n) for n in names}
    return {n: i for i, n in enumerate(sorted(set(names)))}


def _scan(
    folder: Path, pid_of: dict[str, int], cam_re: re.Pattern[str] | None, default_cam: int
) -> list[ReIDItem]:
    items = []
    for d in _identity_dirs(folder):
        for path in sorted(d.iterdir()):
            if not path.is_file() or not is_image_file(path.name):
                continue
            if cam_re is None:
                cam = default_cam
            else:
                m = cam_re.search(path.name)
                if m is None:
                    raise DatasetError(
                        f"custom: cannot read a camera from file name {path} with regex "
                        f"{cam_re.pattern!r} (set camera_regex, or None for no cameras)"
                    )
                cam = int(m.group(1))
            items.append(ReIDItem(str(path), pid_of[d.name], cam))
    return items


def _split_test(items: list[ReIDItem], per_camera: int) -> tuple[list[ReIDItem], list[ReIDItem]]:
    seen: dict[tuple[int, int], int] = defaultdict(int)
    query, gallery = [], []
    for it in items:
        key = (it.pid, it.camid)
        if seen[key] < per_camera:
            query.append(it)
        else:
            gallery.append(it)
        seen[key] += 1
    return query, gallery


@register_dataset("custom")
def custom(
    root: Path,
    camera_regex: str | None = DEFAULT_CAMERA_REGEX,
    train_dir: str = "train",
    query_dir: str = "query",
    gallery_dir: str = "gallery",
    test_dir: str = "test",
    query_per_camera: int = 1,
    allow_outside_paths: bool = False,
) -> ReIDDataset:
    """Load a folder-per-identity tree or a CSV manifest (see the module docstring)."""
    if root.suffix.lower() == ".csv" or (root / "manifest.csv").is_file():
        csv_path = root if root.suffix.lower() == ".csv" else root / "manifest.csv"
        return load_manifest(csv_path, allow_outside_paths=allow_outside_paths)
    if not root.is_dir():
        raise DatasetError(f"custom: dataset folder {root} does not exist")
    cam_re = re.compile(camera_regex) if camera_regex else None
    tr, q, g, t = (root / train_dir, root / query_dir, root / gallery_dir, root / test_dir)
    if not (tr.is_dir() or (q.is_dir() and g.is_dir()) or t.is_dir()):
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DatasetError(
            f"custom: {root} has none of the expected sub-folders {train_dir}/, "
            f"{query_dir}/ + {gallery_dir}/, or {test_dir}/ (found: {', '.join(found) or 'none'})"
        )
    train: list[ReIDItem] = []
    if tr.is_dir():
        train = relabel(_scan(tr, _pid_map([d.name for d in _identity_dirs(tr)]), cam_re, 0))
    if q.is_dir() and g.is_dir():
        names = [d.name for d in _identity_dirs(q) + _identity_dirs(g)]
        pid_of = _pid_map(names)
        query, gallery = _scan(q, pid_of, cam_re, 0), _scan(g, pid_of, cam_re, 1)
    elif t.is_dir():
        pid_of = _pid_map([d.name for d in _identity_dirs(t)])
        if cam_re is None:
            raise DatasetError(
                f"custom: splitting {t} into query and gallery needs cameras (camera_regex)"
            )
        query, gallery = _split_test(_scan(t, pid_of, cam_re, 0), query_per_camera)
    else:
        query, gallery = [], []
    if tr.is_dir():
        check_split(train, "custom", "train", tr)
    if q.is_dir() or t.is_dir():
        check_split(query, "custom", "query", q if q.is_dir() else t)
        check_split(gallery, "custom", "gallery", g if g.is_dir() else t)
    return ReIDDataset("custom", root, train, query, gallery, "market")


def load_manifest(csv_path: Path, *, allow_outside_paths: bool = False) -> ReIDDataset:
    """Load a CSV manifest with columns path, pid, camid, split (and optional trackid);
    ``allow_outside_paths``: accept absolute paths and paths leaving the CSV's folder."""
    if not csv_path.is_file():
        raise DatasetError(f"custom: manifest {csv_path} does not exist")
    splits: dict[str, list[ReIDItem]] = {"train": [], "query": [], "gallery": []}
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        missing = [c for c in MANIFEST_COLUMNS if c not in cols]
        unknown = [c for c in cols if c not in MANIFEST_COLUMNS + OPTIONAL_COLUMNS]
        if missing or unknown:
            problems = [
                f"{kind} column(s) {', '.join(names)}"
                for kind, names in (("missing", missing), ("unknown", unknown))
                if names
            ]
            raise DatasetError(
                f"custom: manifest {csv_path} has {'; '.join(problems)} "
                f"(expected {', '.join(MANIFEST_COLUMNS)}[, trackid])"
            )
        for line, row in enumerate(reader, start=2):
            values = {}
            for col in ("pid", "camid", "trackid"):
                raw = (row.get(col) or "").strip() if col in row else "-1"
                try:
                    values[col] = int(raw)
                except ValueError:
                    raise DatasetError(
                        f"custom: manifest {csv_path} line {line}: {col} {raw!r} is not an integer"
                    ) from None
            split = (row["split"] or "").strip()
            if split not in splits:
                raise DatasetError(
                    f"custom: manifest {csv_path} line {line}: split {split!r} is not one of "
                    f"train, query, gallery"
                )
            path = manifest_file(
                row["path"],
                csv_path.parent,
                f"custom: manifest {csv_path} line {line}",
                allow_outside=allow_outside_paths,
                switch="the dataset option allow_outside_paths: true",
            )
            splits[split].append(
                ReIDItem(str(path), values["pid"], values["camid"], values["trackid"])
            )
    if not any(splits.values()):
        raise DatasetError(f"custom: manifest {csv_path} lists no images")
    for have, lack in (("query", "gallery"), ("gallery", "query")):
        if splits[have] and not splits[lack]:
            raise DatasetError(
                f"custom: manifest {csv_path} lists {have} images but no {lack} images "
                f"(split column value {lack!r}): there is nothing to evaluate against"
            )
    return ReIDDataset(
        "custom", csv_path, relabel(splits["train"]), splits["query"], splits["gallery"], "market"
    )
