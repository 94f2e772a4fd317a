from __future__ import annotations

from pathlib import Path

import pytest

from attnreid.data import build_dataset
from attnreid.data.stats import compare_with_published
from attnreid.errors import DatasetError
from tests.data.trees import touch_images


def _msmt(root: Path, train_dir: str = "train", test_dir: str = "test") -> Path:
    lists = {
        "list_train.txt": [
            ("0000/0000_000_01_0303morning_0015_0.jpg", 0),
            ("0000/0000_001_05_0303morning_0016_1.jpg", 0),
            ("0002/0002_004_14_0303noon_0020_0.jpg", 2),
        ],
        "list_val.txt": [
            ("0002/0002_005_15_0303noon_0021_1.jpg", 2),
            ("0001/0001_003_03_0303morning_0030_0.jpg", 1),
        ],
        "list_query.txt": [("0000/0000_000_02_0303morning_0008_0.jpg", 0)],
        "list_gallery.txt": [
            ("0000/0000_002_07_0303afternoon_0090_0.jpg", 0),
            ("0003/0003_000_10_0303afternoon_0091_0.jpg", 3),
        ],
    }
    for name, rows in lists.items():
        folder = root / (train_dir if name in ("list_train.txt", "list_val.txt") else test_dir)
        for rel, _ in rows:
            touch_images(folder / Path(rel).parent, [Path(rel).name])
        (root / name).write_text("".join(f"{rel} {pid}\n" for rel, pid in rows))
    return root


def test_msmt17_v1(tmp_path):
    _msmt(tmp_path / "msmt17" / "MSMT17_V1")
    ds = build_dataset("msmt17", tmp_path)  # torchreid's msmt17/MSMT17_V1 nesting
    assert ds.info["version"] == "MSMT17_V1" and ds.eval_mode == "market"
    assert len(ds.train) == 5 and sorted({it.pid for it in ds.train}) == [0, 1, 2]
    assert {it.camid for it in ds.train} == {0, 4, 13, 14, 2}  # cameras 01 05 14 15 03
    assert [(it.pid, it.camid) for it in ds.query] == [(0, 1)]
    assert [(it.pid, it.camid) for it in ds.gallery] == [(0, 6), (3, 9)]
    assert ds.gallery[1].path.endswith("MSMT17_V1/test/0003/0003_000_10_0303afternoon_0091_0.jpg")
    no_val = build_dataset("msmt17", tmp_path, include_val=False)
    assert len(no_val.train) == 3 and no_val.num_train_pids == 2
    assert not any(d.startswith("train images") for d in compare_with_published(no_val))
    assert any(d.startswith("train images: 5 here, 32,621") for d in compare_with_published(ds))


def test_msmt17_v2(tmp_path):
    _msmt(tmp_path / "MSMT17_V2", "mask_train_v2", "mask_test_v2")
    ds = build_dataset("msmt17", tmp_path / "MSMT17_V2")
    assert ds.info["version"] == "MSMT17_V2" and "mask_test_v2" in ds.query[0].path


def test_msmt17_errors(tmp_path):
    root = _msmt(tmp_path / "m")
    (root / "list_query.txt").write_text("0000/0000_000_02_0303morning_0008_0.jpg\n")
    with pytest.raises(DatasetError, match=r"list_query.txt line 1: .* does not parse"):
        build_dataset("msmt17", root)
    (root / "list_query.txt").write_text("0000/0000_000_22_0303morning_0008_0.jpg 0\n")
    with pytest.raises(DatasetError, match="camera 22 of .* is not in 1..15"):
        build_dataset("msmt17", root)
    (root / "list_query.txt").write_text("")
    with pytest.raises(DatasetError, match="query split is empty"):
        build_dataset("msmt17", root)
    (root / "list_query.txt").unlink()
    with pytest.raises(DatasetError, match="missing split file .*list_query.txt"):
        build_dataset("msmt17", root)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"expected sub-folders train/ \+ test/ .*found: images"):
        build_dataset("msmt17", tmp_path / "empty")
