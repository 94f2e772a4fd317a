"""Writers for CUHK03 .mat files in their real structure (tests only).

``cuhk-03.mat`` is MATLAB v7.3 (HDF5 with a 512-byte MATLAB header): ``labeled`` and
``detected`` are 5 x 1 cells (HDF5 (1, 5) object references) of N x 10 cells (HDF5 (10, N))
of uint8 H x W x 3 images (HDF5 (3, W, H)); an empty cell is a 2-vector ``[0 0]`` with
attribute ``MATLAB_empty``; ``testsets`` is a 20 x 1 cell of 100 x 2 doubles (camera pair,
identity). The new-protocol split files are MATLAB v5 (scipy ``savemat``).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import h5py
import numpy as np

Pair = list[list[np.ndarray | None]]  # identities x 10 images (None: empty cell)


def write_raw_mat(
    path: Path, labeled: list[Pair], detected: list[Pair], testsets: list[list[tuple[int, int]]]
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    counter = itertools.count()
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")

        def put(data: np.ndarray | None, cls: str) -> h5py.Reference:
            name = f"r{next(counter)}"
            if data is None:
                ds = refs.create_dataset(name, data=np.zeros(2, dtype=np.uint64))
                ds.attrs["MATLAB_empty"] = np.uint8(1)
            else:
                ds = refs.create_dataset(name, data=np.ascontiguousarray(data.T))
            ds.attrs["MATLAB_class"] = np.bytes_(cls)
            return ds.ref

        def put_cell(cell: np.ndarray) -> h5py.Reference:
            name = f"r{next(counter)}"
            ds = refs.create_dataset(name, data=cell.T, dtype=h5py.ref_dtype)
            ds.attrs["MATLAB_class"] = np.bytes_("cell")
            return ds.ref

        for kind, pairs in (("detected", detected), ("labeled", labeled)):
            pair_refs = []
            for pair in pairs:
                cell = np.empty((len(pair), 10), dtype=h5py.ref_dtype)
                for i, images in enumerate(pair):
                    for j in range(10):
                        cell[i, j] = put(images[j], "uint8")
                pair_refs.append(put_cell(cell))
            top = np.array(pair_refs, dtype=h5py.ref_dtype).reshape(1, -1)  # MATLAB 5 x 1
            f.create_dataset(kind, data=top, dtype=h5py.ref_dtype)
            f[kind].attrs["MATLAB_class"] = np.bytes_("cell")
        sets = [put(np.array(s, dtype=np.float64), "double") for s in testsets]
        f.create_dataset("testsets", data=np.array(sets, dtype=h5py.ref_dtype).reshape(1, -1))
        f["testsets"].attrs["MATLAB_class"] = np.bytes_("cell")
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
        b"HDF5 schema 1.00 ."
    )
    with open(path, "r+b") as fh:  # the 128-byte MATLAB header in the HDF5 user block
        fh.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02IM")
    return path


def write_split_mat(
    path: Path,
    filelist: list[str],
    labels: list[int],
    cams: list[int],
    train: list[int],
    query: list[int],
    gallery: list[int],
) -> Path:
    """A ``cuhk03_new_protocol_config_*.mat`` with the real fields (indices 1-based)."""
    from scipy.io import savemat

    cells = np.empty((len(filelist), 1), dtype=object)
    for i, name in enumerate(filelist):
        cells[i, 0] = np.array([name])

    def col(values: list[int], dtype: type) -> np.ndarray:
        return np.asarray(values, dtype=dtype).reshape(-1, 1)

    savemat(
        path,
        {
            "filelist": cells,
            "labels": col(labels, np.uint16),
            "camId": col(cams, np.uint8),
            "train_idx": col(train, np.uint16),
            "query_idx": col(query, np.uint16),
            "gallery_idx": col(gallery, np.uint16),
        },
    )
    return path
