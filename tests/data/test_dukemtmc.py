from __future__ import annotations

import pytest

from attnreid.data import build_dataset
from attnreid.data.stats import compare_with_published
from attnreid.errors import DatasetError

DUKE = {
    "bounding_box_train": [
        "0001_c2_f0046182.jpg",
        "0001_c5_f0051341.jpg",
        "0003_c1_f0044158.jpg",
        "0003_c8_f0212050.jpg",
    ],
    "query": ["0005_c2_f0046985.jpg", "0008_c7_f0128024.jpg"],
    "bounding_box_test": [
        "0005_c5_f0051781.jpg",
        "0008_c1_f0061280.jpg",
        "0008_c7_f0127999.jpg",
        "0009_c6_f0039420.jpg",  # a gallery-only identity (distractor)
    ],
}


def test_duke_layout(make_market, tmp_path):
    make_market(DUKE, tmp_path / "dukemtmc-reid" / "DukeMTMC-reID")
    ds = build_dataset("dukemtmc-reid", tmp_path)  # torchreid's nesting
    assert ds.root.name == "DukeMTMC-reID" and ds.eval_mode == "market"
    assert sorted({it.pid for it in ds.train}) == [0, 1]  # 0001, 0003 relabelled
    assert {it.camid for it in ds.train} == {1, 4, 0, 7}  # c2 c5 c1 c8, 0-based
    assert [(it.pid, it.camid) for it in ds.query] == [(5, 1), (8, 6)]
    assert {it.pid for it in ds.gallery} == {5, 8, 9}
    assert ds.info["junk"] == {}
    diffs = compare_with_published(ds)
    assert "train ids: 2 here, 702 published (Zheng, Zheng, Yang, ICCV 2017)" in diffs
    assert len(diffs) == 4


def test_duke_errors(make_market, tmp_path):
    make_market({"query": DUKE["query"]}, tmp_path / "partial")
    with pytest.raises(DatasetError, match="missing: bounding_box_train, bounding_box_test"):
        build_dataset("dukemtmcreid", tmp_path / "partial")
    bad = dict(DUKE, query=["5_2_46985.jpg"])
    make_market(bad, tmp_path / "bad")
    with pytest.raises(DatasetError, match="5_2_46985.jpg does not match"):
        build_dataset("dukemtmcreid", tmp_path / "bad")
