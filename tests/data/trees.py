"""Miniature dataset trees in the layouts as distributed (shared by the loader tests)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

Track = tuple[int, int, int, int]  # (pid, camera 1-based, tracklet number, number of frames)


def tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (120, 60, 30)).save(buf, format="PNG")
    return buf.getvalue()


def touch_images(folder: Path, names: Sequence[str]) -> None:
    """1x1 PNG files named ``names`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = tiny_png()
    for name in names:
        (folder / name).write_bytes(data)


def mars_frame(pid: int, cam: int, track: int, frame: int) -> str:
    p = "00-1" if pid == -1 else f"{pid:04d}"
    return f"{p}C{cam}T{track:04d}F{frame:03d}.jpg"


def _frames(home: Path, tracks: Sequence[Track], size: tuple[int, int]) -> tuple[list[str], list]:
    names, rows = [], []
    rng = np.random.default_rng(0)
    for pid, cam, t, n in tracks:
        start = len(names) + 1
        for f in range(1, n + 1):
            name = mars_frame(pid, cam, t, f)
            folder = home / name[:4]
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name, format="JPEG")
            names.append(name)
        rows.append([start, len(names), pid, cam])
    return names, rows


def build_mars(
    root: Path,
    train: Sequence[Track],
    test: Sequence[Track],
    query_rows: Sequence[int],
    *,
    name_files: bool = True,
    size: tuple[int, int] = (8, 16),
) -> Path:
    """A MARS tree: frames, info/*_name.txt, and the .mat tables (doubles, as MATLAB saves)."""
    from scipy.io import savemat

    info = root / "info"
    info.mkdir(parents=True, exist_ok=True)
    train_names, train_rows = _frames(root / "bbox_train", train, size)
    test_names, test_rows = _frames(root / "bbox_test", test, size)
    if name_files:
        (info / "train_name.txt").write_text("\n".join(train_names) + "\n")
        (info / "test_name.txt").write_text("\n".join(test_names) + "\n")
    savemat(info / "tracks_train_info.mat", {"track_train_info": np.array(train_rows, float)})
    savemat(info / "tracks_test_info.mat", {"track_test_info": np.array(test_rows, float)})
    savemat(info / "query_IDX.mat", {"query_IDX": np.array([query_rows], float)})  # 1 x Q
    return root


# a small MARS: 3 training identities (one tracklet shorter than 4 frames), a test set with
# queries, gallery tracklets, a distractor (0) and a junk tracklet (-1)
MARS_TRAIN: list[Track] = [
    (1, 1, 1, 5),
    (1, 2, 2, 3),
    (3, 1, 1, 4),
    (3, 3, 2, 6),
    (7, 2, 1, 2),
    (7, 4, 2, 5),
]
MARS_TEST: list[Track] = [
    (-1, 1, 1, 2),  # junk
    (0, 2, 1, 3),  # distractor
    (2, 1, 1, 4),
    (2, 2, 2, 3),
    (2, 3, 3, 5),
    (5, 1, 1, 3),
    (5, 6, 2, 4),
]
MARS_QUERY = [3, 6]  # 1-based rows of the test table: (2, cam 1) and (5, cam 1)
