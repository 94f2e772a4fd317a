"""MARS video re-ID (Zheng et al., ECCV 2016): tracklets as items.

Layout as distributed (``root`` is the MARS folder, or holds ``MARS/`` or ``mars/``)::

    bbox_train/0001/0001C1T0001F001.jpg ...   frames: identity, camera 1..6, tracklet, frame
    bbox_test/0000/ (distractors), 00-1/ (junk), 0002/ ...
    info/train_name.txt, test_name.txt        every frame name, one per line, in the order
                                              the track tables index
    info/tracks_train_info.mat                track_train_info: N x 4 = first frame, last
    info/tracks_test_info.mat                 frame (1-based, inclusive, into *_name.txt),
                                              identity, camera (1-based)
    info/query_IDX.mat                        query_IDX: 1-based rows of track_test_info

Each tracklet is a :class:`~attnreid.data.base.ReIDItem` whose ``frames`` are the frame paths
(``path`` is the first frame, ``trackid`` the ``T`` number). As in torchreid and the MARS
evaluation code, junk tracklets (identity -1) are dropped and distractors (identity 0) stay in
the gallery. Gallery: by default the test tracklets that are not queries (torchreid; 9,330
after junk removal); ``query_in_gallery=True`` uses all test tracklets, as the official MATLAB
evaluation does (each query then meets itself, removed as same-camera junk).

When ``info/*_name.txt`` are missing, the frame lists are rebuilt by listing ``bbox_*/`` in
sorted order; every tracklet's first and last frame are checked against its identity and
camera either way, so an order that does not fit the tables is an error, not a silent mix-up.

Published statistics: 625 training identities in 8,298 tracklets; 636 test identities in
12,180 test tracklets (``track_test_info`` rows, junk and distractors included; the identity
count excludes 0 and -1), 1,980 of them queries. The loader records the test counts as
distributed in ``info["distributed"]`` for ``attnreid data stats``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from attnreid.data.base import ReIDDataset, ReIDItem, check_split, relabel
from attnreid.data.datasets.registry import register_dataset
from attnreid.errors import DatasetError

FRAME_NAME = re.compile(r"^([-\d]{4})C(\d)T(\d{4})F(\d+)\.\w+$")
INFO_FILES = {
    "train": ("tracks_train_info.mat", "track_train_info"),
    "test": ("tracks_test_info.mat", "track_test_info"),
    "query": ("query_IDX.mat", "query_IDX"),
}


def _locate(root: Path) -> Path:
    for base in (root, root / "MARS", root / "mars"):
        if all((base / s).is_dir() for s in ("bbox_train", "bbox_test", "info")):
            return base
    if not root.is_dir():
        raise DatasetError(f"mars: dataset folder {root} does not exist")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())[:12]
    missing = [s for s in ("bbox_train", "bbox_test", "info") if not (root / s).is_dir()]
    raise DatasetError(
        f"mars: {root} is not a MARS folder: expected sub-folders bbox_train, bbox_test, info "
        f"(missing: {', '.join(missing)}; found: {', '.join(found) or 'none'})"
    )


def _load_mat(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat

    if not path.is_file():
        raise DatasetError(f"mars: missing split file {path}")
    try:
        mat = loadmat(path)
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError...
        raise DatasetError(f"mars: cannot read {path}: {exc}") from None
    if key not in mat:
        found = [k for k in mat if not k.startswith("__")]
        raise DatasetError(f"mars: {path} has no variable {key!r} (found: {', '.join(found)})")
    arr = np.asarray(mat[key])
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        raise DatasetError(f"mars: {path}: {key} holds non-integer values")
    return arr.astype(np.int64)


def _frame_names(info: Path, home: Path, split: str) -> list[str]:
    listing = info / f"{split}_name.txt"
    if listing.is_file():
        return [ln.strip() for ln in listing.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return sorted(p.name for d in sorted(home.iterdir()) if d.is_dir() for p in d.iterdir())


def _pid_of(field: str) -> int:
    return -1 if "-" in field else int(field)


def tracklets(
    names: list[str], table: np.ndarray, home: Path, table_path: Path
) -> tuple[list[ReIDItem], int]:
    """Tracklet items of one track table (junk dropped) and the number of junk rows."""
    if table.ndim != 2 or table.shape[1] < 4:
        raise DatasetError(f"mars: {table_path}: expected an N x 4 track table, got {table.shape}")
    items, junk = [], 0
    for row, (start, end, pid, cam) in enumerate(table[:, :4].tolist(), start=1):
        if not 1 <= start <= end <= len(names):
            raise DatasetError(
                f"mars: {table_path} row {row}: frames {start}..{end} are outside the "
                f"{len(names)} frame names"
            )
        if not 1 <= cam <= 6:
            raise DatasetError(f"mars: {table_path} row {row}: camera {cam} is not in 1..6")
        frames = names[start - 1 : end]
        ends = []
        for name in (frames[0], frames[-1]):
            m = FRAME_NAME.match(name)
            if m is None:
                raise DatasetError(
                    f"mars: frame name {name!r} does not match PPPPCcTttttFfff.jpg "
                    f"(e.g. 0001C1T0001F001.jpg)"
                )
            ends.append((_pid_of(m.group(1)), int(m.group(2)), int(m.group(3))))
        if ends[0] != ends[1] or ends[0][:2] != (pid, cam):
            raise DatasetError(
                f"mars: {table_path} row {row} (identity {pid}, camera {cam}) spans frames "
                f"{frames[0]} .. {frames[-1]}, which do not all show that identity and camera "
                f"(frame list and track table do not fit)"
            )
        if pid == -1:
            junk += 1
            continue
        paths = tuple(str(home / name[:4] / name) for name in frames)
        items.append(ReIDItem(paths[0], pid, cam - 1, ends[0][2], paths))
    return items, junk


@register_dataset("mars")
def mars(root: Path, query_in_gallery: bool = False) -> ReIDDataset:
    """Load MARS tracklets from ``root``."""
    base = _locate(root)
    info_dir = base / "info"
    tables = {k: _load_mat(info_dir / f, key) for k, (f, key) in INFO_FILES.items()}
    train_home, test_home = base / "bbox_train", base / "bbox_test"
    train, _ = tracklets(
        _frame_names(info_dir, train_home, "train"),
        tables["train"],
        train_home,
        info_dir / INFO_FILES["train"][0],
    )
    test_table = tables["test"]
    q_idx = tables["query"].ravel() - 1
    if len(q_idx) and (q_idx.min() < 0 or q_idx.max() >= len(test_table)):
        raise DatasetError(
            f"mars: {info_dir / INFO_FILES['query'][0]}: query_IDX holds rows outside "
            f"1..{len(test_table)}"
        )
    is_query = np.zeros(len(test_table), dtype=bool)
    is_query[q_idx] = True
    test_names = _frame_names(info_dir, test_home, "test")
    test_path = info_dir / INFO_FILES["test"][0]
    query, q_junk = tracklets(test_names, test_table[q_idx], test_home, test_path)
    g_rows = test_table if query_in_gallery else test_table[~is_query]
    gallery, g_junk = tracklets(test_names, g_rows, test_home, test_path)
    for split, items, where in (
        ("train", train, train_home),
        ("query", query, test_home),
        ("gallery", gallery, test_home),
    ):
        check_split(items, "mars", split, where)
        if not Path(items[0].path).is_file():
            raise DatasetError(f"mars: the {split} frame {items[0].path} does not exist")
    test_pids = {int(p) for p in test_table[:, 2] if p > 0}
    info = {
        "junk": {k: v for k, v in (("query", q_junk), ("gallery", g_junk)) if v},
        "distributed": {"test": {"ids": len(test_pids), "images": len(test_table)}},
        "query_in_gallery": query_in_gallery,
        "num_frames": {
            s: sum(len(it.frames) for it in items)
            for s, items in (("train", train), ("query", query), ("gallery", gallery))
        },
    }
    return ReIDDataset("mars", base, relabel(train), query, gallery, "market", info)
