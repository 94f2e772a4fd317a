"""Reading the raw CUHK03 release ``cuhk03_release/cuhk-03.mat`` (MATLAB v7.3 = HDF5).

Structure of the file (MATLAB's HDF5 layout stores every array transposed; cells are arrays
of object references into the ``#refs#`` group)::

    labeled, detected   cell 5 x 1   (HDF5 shape (1, 5)): one cell per camera pair
      camera pair p     cell N_p x 10 (HDF5 (10, N_p)): identity x image; images 1-5 are
                        from the pair's first camera, 6-10 from its second; an empty cell
                        ([], stored as a 2-vector with attribute MATLAB_empty) is no image
        image           uint8 H x W x 3 (HDF5 (3, W, H))
    testsets            cell 20 x 1  (HDF5 (1, 20)): the classic protocol's test identities
      test set s        double 100 x 2 (HDF5 (2, 100)): rows (camera pair, identity), 1-based

Extraction writes every image once as ``P_III_V_NN.png`` (camera pair, identity within the
pair, view 1/2, image 01..10 — the names of the new-protocol split files and of torchreid's
``images_labeled/`` / ``images_detected/`` folders). It is idempotent and safe to interrupt:
images go to ``images_<kind>.partial/``, each written to a temporary name and renamed, so a
killed run leaves only whole files there and the next run continues where it stopped; the
folder is renamed to ``images_<kind>/`` when complete, so an existing ``images_<kind>/`` is
always complete and is never touched again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from attnreid.errors import DatasetError
from attnreid.utils.checks import one_of
from attnreid.utils.progress import progress_bar

KINDS = ("labeled", "detected")


def image_name(pair: int, pid: int, view: int, img: int) -> str:
    """``P_III_V_NN.png``, all 1-based."""
    return f"{pair}_{pid:03d}_{view}_{img:02d}.png"


def _open(mat_path: Path) -> Any:
    import h5py

    if not mat_path.is_file():
        raise DatasetError(f"cuhk03: raw release {mat_path} does not exist")
    try:
        return h5py.File(mat_path, "r")
    except OSError as exc:
        raise DatasetError(
            f"cuhk03: {mat_path} is not a MATLAB v7.3 (HDF5) file: {exc}".splitlines()[0]
        ) from None


def _deref(f: Any, ref: Any) -> np.ndarray | None:
    """The MATLAB array behind ``ref`` in MATLAB's axis order, or None for an empty cell."""
    ds = f[ref]
    if ds.attrs.get("MATLAB_empty", 0):
        return None
    arr = np.asarray(ds[()])
    return None if arr.size == 0 else arr.T


def _pairs(f: Any, kind: str, mat_path: Path) -> list[np.ndarray]:
    if kind not in f:
        raise DatasetError(f"cuhk03: {mat_path} has no {kind!r} cell array (found: {list(f)})")
    refs = np.asarray(f[kind][()]).ravel()
    return [_deref(f, r) for r in refs]


def count_images(mat_path: Path, kind: str) -> int:
    """Number of non-empty image cells of ``kind`` (reads only the cell headers)."""
    with _open(mat_path) as f:
        total = 0
        for pair in _pairs(f, kind, mat_path):
            for ref in np.asarray(pair).ravel():
                ds = f[ref]
                total += not ds.attrs.get("MATLAB_empty", 0) and ds.ndim == 3 and ds.size > 0
        return total


def iter_images(mat_path: Path, kind: str) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """``(name, load)`` for every image of ``kind``; ``load()`` returns the H x W x 3 array."""
    with _open(mat_path) as f:
        for p, pair in enumerate(_pairs(f, kind, mat_path), start=1):
            if pair is None or pair.ndim != 2:
                raise DatasetError(f"cuhk03: {mat_path}: camera pair {p} of {kind!r} is malformed")
            for i in range(pair.shape[0]):
                for j in range(pair.shape[1]):
                    ds = f[pair[i, j]]
                    if ds.attrs.get("MATLAB_empty", 0) or ds.ndim != 3 or ds.size == 0:
                        continue
                    name = image_name(p, i + 1, 1 if j < 5 else 2, j + 1)
                    yield name, (lambda ds=ds: np.ascontiguousarray(np.asarray(ds[()]).T))


def read_testsets(mat_path: Path) -> list[set[tuple[int, int]]]:
    """The 20 classic test sets, each a set of (camera pair, identity), 1-based."""
    with _open(mat_path) as f:
        if "testsets" not in f:
            raise DatasetError(f"cuhk03: {mat_path} has no 'testsets' (classic protocol splits)")
        out = []
        for ref in np.asarray(f["testsets"][()]).ravel():
            arr = _deref(f, ref)
            if arr is None or arr.ndim != 2 or arr.shape[1] != 2:
                raise DatasetError(f"cuhk03: {mat_path}: a classic test set is not an N x 2 array")
            out.append({(int(a), int(b)) for a, b in arr})
        return out


def _save_png(arr: np.ndarray, target: Path) -> None:
    from PIL import Image

    tmp = target.with_name(f".{target.name}.tmp")
    Image.fromarray(arr.astype(np.uint8, copy=False)).save(tmp, format="PNG")
    os.replace(tmp, target)


def extract_images(
    mat_path: Path, kind: str, cache_dir: Path, progress: bool | None = None
) -> tuple[Path, int]:
    """Extract the ``kind`` (labeled / detected) images to ``cache_dir/images_<kind>/``.

    Returns the folder and the number of images written now (0 if it was complete already).
    """
    one_of(kind, KINDS, "cuhk03: images", DatasetError)
    final = cache_dir / f"images_{kind}"
    if final.is_dir():
        return final, 0
    partial = cache_dir / f"images_{kind}.partial"
    try:
        partial.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(
            f"cuhk03: cannot create {partial} to extract the images ({exc.strerror}); "
            f"set the cache_dir option to a writable folder"
        ) from None
    for stale in partial.glob(".*.tmp"):
        stale.unlink()
    if progress is None:
        progress = sys.stderr.isatty()
    total = count_images(mat_path, kind)
    written = 0
    with progress_bar(total, f"CUHK03 {kind} images", progress) as advance:
        for name, load in iter_images(mat_path, kind):
            target = partial / name
            if not target.exists():
                _save_png(load(), target)
                written += 1
            advance(1)
    os.replace(partial, final)
    return final, written
