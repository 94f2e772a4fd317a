from __future__ import annotations

import pytest

from attnreid.cli.main import main
from tests.conftest import MARKET
from tests.data.test_cuhk03 import _raw_release


def test_help():
    for args in (["data", "--help"], ["data", "stats", "--help"], ["data", "prepare", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 0


def test_stats_warns_on_each_difference(make_market, capsys):
    root = make_market(MARKET)
    assert main(["data", "stats", "market1501", "--root", str(root)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"market1501: {root}"
    assert "  train    |     2 |         4 |       3" in lines
    assert "  gallery  |     3 |         4 |       2" in lines
    assert "  junk images dropped: gallery 1" in lines
    assert "published (Zheng et al., ICCV 2015; counts as distributed):" in lines
    warnings = err.splitlines()
    assert len(warnings) == 5 and all(w.startswith("warning: ") for w in warnings)
    assert "warning: gallery images: 5 here, 19,732 published (Zheng et al., ICCV 2015)" in err


def test_stats_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    assert main(["data", "stats", "mars", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected sub-folders bbox_train, bbox_test, info" in err
    assert "found: train" in err
    assert main(["data", "stats", "cuhk01", "--root", str(tmp_path), "--option", "seed=1"]) == 2
    assert "dataset 'cuhk01' has no option 'seed'" in capsys.readouterr().err
    assert main(["data", "stats", "cuhk01", "--root", str(tmp_path), "--option", "x"]) == 2
    assert "must look like key=value" in capsys.readouterr().err


def test_stats_cuhk01_real(shared, capsys):
    assert main(["data", "stats", "cuhk01", "--root", str(shared / "data" / "cuhk01")]) == 0
    out, err = capsys.readouterr()
    assert "  all      |   971 |     3,884 |       2" in out
    assert out.strip().endswith("all counts match the published numbers") and err == ""


@pytest.mark.parametrize("kind, gallery", [("labeled", "5,328"), ("detected", "5,332")])
def test_stats_cuhk03_split_files(shared, capsys, kind, gallery):
    root = shared / "data" / "cuhk03_np_splits"
    args = ["--option", f"images={kind}", "--option", "check_images=false"]
    assert main(["data", "stats", "cuhk03", "--root", str(root), *args]) == 0
    out, err = capsys.readouterr()
    assert f"  gallery  |   700 |     {gallery} |       2" in out
    assert "all counts match the published numbers" in out and err == ""


def test_prepare_cuhk03_and_others(tmp_path, make_market, capsys):
    _raw_release(tmp_path / "cuhk03")
    assert main(["data", "prepare", "cuhk03", "--root", str(tmp_path / "cuhk03")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"cuhk03 labeled: {tmp_path / 'cuhk03' / 'images_labeled'} (47 images extracted)",
        f"cuhk03 detected: {tmp_path / 'cuhk03' / 'images_detected'} (47 images extracted)",
    ]
    assert main(["data", "prepare", "cuhk03", "--root", str(tmp_path / "cuhk03")]) == 0
    assert capsys.readouterr().out.count("already complete") == 2
    assert main(["data", "prepare", "market1501", "--root", str(make_market(MARKET))]) == 0
    assert "nothing to prepare" in capsys.readouterr().out
    make_market(MARKET, tmp_path / "np" / "cuhk03-np" / "detected")
    assert main(["data", "prepare", "cuhk03", "--root", str(tmp_path / "np")]) == 0
    assert "CUHK03-NP layout: nothing to prepare" in capsys.readouterr().out
    assert main(["data", "prepare", "cuhk03", "--root", str(tmp_path / "nothing")]) == 2
    assert "expected the raw release" in capsys.readouterr().err
