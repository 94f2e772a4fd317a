"""Market-1501 beyond the basics of test_datasets.py: junk accounting and the 500k set."""

from __future__ import annotations

import pytest

from attnreid.data import build_dataset
from attnreid.data.stats import compare_with_published, distributed_counts
from attnreid.errors import DatasetError
from tests.conftest import MARKET


def test_junk_is_counted_as_distributed(make_market):
    ds = build_dataset("market1501", make_market(MARKET))
    assert ds.info["junk"] == {"gallery": 1}
    counts = distributed_counts(ds)
    assert counts["gallery"]["images"] == len(ds.gallery) + 1 == 5
    diffs = compare_with_published(ds)
    assert "gallery images: 5 here, 19,732 published (Zheng et al., ICCV 2015)" in diffs
    kept = build_dataset("market1501", make_market(MARKET), keep_junk=True)
    assert any(it.pid == -1 for it in kept.gallery)


def test_500k_distractors(make_market, tmp_path):
    root = make_market({**MARKET, "images": ["0000_c1s1_100001_01.jpg", "0000_c6s2_100002_01.jpg"]})
    (root / "images" / "readme.txt").write_text("not an image: ignored")
    plain = build_dataset("market1501", root)
    ds = build_dataset("market1501", root, distractors_500k=True)
    extra = ds.gallery[len(plain.gallery) :]
    assert [(it.pid, it.camid) for it in extra] == [(0, 0), (0, 5)]
    assert ds.info["num_distractors_500k"] == 2
    assert not any(d.startswith("gallery") for d in compare_with_published(ds))
    with pytest.raises(DatasetError, match="expected the 500k distractor folder .*/extra500k"):
        build_dataset("market1501", root, distractors_500k=True, distractors_dir="extra500k")
