from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attnreid.data import build_dataset
from attnreid.data.stats import compare_with_published, distributed_counts, format_stats
from attnreid.errors import DatasetError
from tests.data.trees import MARS_QUERY, MARS_TEST, MARS_TRAIN, build_mars


@pytest.fixture
def mars_root(tmp_path: Path) -> Path:
    return build_mars(tmp_path / "MARS", MARS_TRAIN, MARS_TEST, MARS_QUERY)


def test_mars_tracklets(mars_root):
    ds = build_dataset("mars", mars_root.parent)  # found one level down
    assert ds.root == mars_root and ds.eval_mode == "market"
    assert len(ds.train) == 6 and sorted({it.pid for it in ds.train}) == [0, 1, 2]  # 1, 3, 7
    first = ds.train[0]
    assert first.pid == 0 and first.camid == 0 and first.trackid == 1 and len(first.frames) == 5
    assert first.path == first.frames[0]
    assert first.frames[-1] == str(mars_root / "bbox_train" / "0001" / "0001C1T0001F005.jpg")
    assert [(it.pid, it.camid, len(it.frames)) for it in ds.query] == [(2, 0, 4), (5, 0, 3)]
    gallery = [(it.pid, it.camid) for it in ds.gallery]
    assert gallery == [(0, 1), (2, 1), (2, 2), (5, 5)]  # junk dropped, distractor kept
    assert ds.info["junk"] == {"gallery": 1}
    test = distributed_counts(ds)["test"]  # as distributed: junk included, distractor not an id
    assert (test["ids"], test["images"]) == (2, 7)
    diffs = compare_with_published(ds)
    assert any(d.startswith("train tracklets: 6 here, 8,298 published") for d in diffs)
    assert any(d.startswith("test ids: 2 here, 636 published") for d in diffs)


def test_mars_stats_table(mars_root):
    lines = format_stats(build_dataset("mars", mars_root)).splitlines()
    assert lines[1] == "  split    |   ids | tracklets | cameras |    frames"
    assert lines[2] == "  train    |     3 |         6 |       4 |        25"
    assert lines[5] == "  test     |     2 |         7 |       4"  # as distributed
    assert "  junk tracklets dropped: gallery 1" in lines
    assert "  test     |   636 |    12,180 |       -" in lines  # published


def test_mars_query_in_gallery(mars_root):
    ds = build_dataset("mars", mars_root, query_in_gallery=True)
    assert len(ds.gallery) == 6 and {it.path for it in ds.query} <= {it.path for it in ds.gallery}


def test_mars_without_name_files(tmp_path):
    root = build_mars(tmp_path / "m", MARS_TRAIN, MARS_TEST, MARS_QUERY, name_files=False)
    with_names = build_mars(tmp_path / "n", MARS_TRAIN, MARS_TEST, MARS_QUERY)
    a, b = build_dataset("mars", root), build_dataset("mars", with_names)
    assert [len(it.frames) for it in a.gallery] == [len(it.frames) for it in b.gallery]
    assert [Path(p).name for p in a.train[3].frames] == [Path(p).name for p in b.train[3].frames]


def test_mars_errors(mars_root, tmp_path):
    from scipy.io import savemat

    with pytest.raises(DatasetError, match=r"expected sub-folders bbox_train, bbox_test, info"):
        build_dataset("mars", tmp_path / "MARS" / "bbox_train")
    info = mars_root / "info"
    table = np.array([[1, 5, 1, 1], [6, 8, 3, 2]], float)  # row 2: frames of another identity
    savemat(info / "tracks_train_info.mat", {"track_train_info": table})
    with pytest.raises(DatasetError, match="row 2 .identity 3, camera 2. spans frames"):
        build_dataset("mars", mars_root)
    savemat(info / "tracks_train_info.mat", {"track_train_info": np.array([[1, 99, 1, 1]])})
    with pytest.raises(DatasetError, match="frames 1..99 are outside the 25 frame names"):
        build_dataset("mars", mars_root)
    savemat(info / "tracks_train_info.mat", {"wrong_name": table})
    with pytest.raises(DatasetError, match="has no variable 'track_train_info'"):
        build_dataset("mars", mars_root)
    (info / "tracks_train_info.mat").unlink()
    with pytest.raises(DatasetError, match="missing split file .*tracks_train_info.mat"):
        build_dataset("mars", mars_root)


def test_mars_bad_frame_name(tmp_path):
    root = build_mars(tmp_path / "m", MARS_TRAIN, MARS_TEST, MARS_QUERY)
    names = (root / "info" / "train_name.txt").read_text().splitlines()
    names[0] = "person1.jpg"
    (root / "info" / "train_name.txt").write_text("\n".join(names))
    with pytest.raises(DatasetError, match="frame name 'person1.jpg' does not match"):
        build_dataset("mars", root)
