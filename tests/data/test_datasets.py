from __future__ import annotations

from pathlib import Path

import pytest

from attnreid.data import build_dataset, read_image
from attnreid.errors import ConfigError, DatasetError
from tests.conftest import MARKET, write_image


def test_market_layout(make_market):
    root = make_market(MARKET)
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"\0")  # ignored, as in the release
    ds = build_dataset("market1501", root)
    assert sorted({it.pid for it in ds.train}) == [0, 1]  # 0002, 0007 relabelled
    assert {it.camid for it in ds.train} == {0, 1, 2}
    assert [it.pid for it in ds.query] == [1, 3]
    gal = {Path(it.path).name: (it.pid, it.camid) for it in ds.gallery}
    assert "-1_c1s1_000005_01.jpg" not in gal  # junk dropped
    assert gal["0000_c1s1_000004_01.jpg"] == (0, 0)  # distractor kept with pid 0
    assert ds.eval_mode == "market"
    assert ds.stats()["gallery"] == {"ids": 3, "images": 4, "cameras": 2}


def test_market_found_one_level_down(make_market, tmp_path):
    make_market(MARKET, tmp_path / "top" / "Market-1501-v15.09.15")
    assert build_dataset("market-1501", tmp_path / "top").num_train_pids == 2


def test_market_errors(make_market, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        build_dataset("market1501", tmp_path / "nowhere")
    root = make_market({"query": ["0001_c1s1_001051_00.jpg"]}, tmp_path / "partial")
    with pytest.raises(DatasetError, match="missing: bounding_box_train"):
        build_dataset("market1501", root)
    bad = dict(MARKET, query=["person1.jpg"])
    root = make_market(bad, tmp_path / "badname")
    with pytest.raises(DatasetError, match="person1.jpg does not match"):
        build_dataset("market1501", root)
    empty = dict(MARKET, query=[])
    root = make_market(empty, tmp_path / "empty")
    with pytest.raises(DatasetError, match="query split is empty"):
        build_dataset("market1501", root)
    with pytest.raises(ConfigError, match="did you mean 'market1501'"):
        build_dataset("market1051", root)
    with pytest.raises(ConfigError, match="no option 'split'"):
        build_dataset("market1501", root, split=3)


def test_cuhk01_split(tmp_path):
    campus = tmp_path / "cuhk01" / "campus"
    for pid in range(1, 11):
        for idx in range(1, 5):
            write_image(campus / f"{pid:04d}{idx:03d}.png", seed=pid * 10 + idx, fmt="PNG")
    ds = build_dataset("cuhk01", tmp_path / "cuhk01", num_train_ids=5, split_seed=3)
    assert ds.num_train_pids == 5 and len(ds.train) == 20
    assert sorted({it.pid for it in ds.train}) == list(range(5))
    assert {it.camid for it in ds.query} == {0} and {it.camid for it in ds.gallery} == {1}
    assert {it.pid for it in ds.query} == {it.pid for it in ds.gallery}
    assert len(ds.query) == len(ds.gallery) == 10
    again = build_dataset("cuhk01", tmp_path / "cuhk01", num_train_ids=5, split_seed=3)
    assert again.query == ds.query
    other = build_dataset("cuhk01", tmp_path / "cuhk01", num_train_ids=5, split_seed=4)
    assert {it.pid for it in other.query} != {it.pid for it in ds.query}
    swapped = build_dataset(
        "cuhk01", tmp_path / "cuhk01", num_train_ids=5, split_seed=3, query_camera="B"
    )
    assert {it.camid for it in swapped.query} == {1}


def test_cuhk01_real(shared):
    ds = build_dataset("cuhk01", shared / "data" / "cuhk01")
    assert ds.num_train_pids == 485 and len(ds.train) == 1940
    assert len({it.pid for it in ds.query}) == 486
    assert len(ds.query) == len(ds.gallery) == 972
    assert read_image(ds.query[0].path).size == (60, 160)


def test_custom_folder_with_test_split(tmp_path):
    root = tmp_path / "custom"
    for split, pids in (("train", ["alice", "bob"]), ("test", ["7", "9"])):
        for pid in pids:
            for cam in (1, 2):
                for k in range(2):
                    write_image(root / split / pid / f"{cam:02d}_{k}.png", seed=k, fmt="JPEG")
    ds = build_dataset("custom", root, camera_regex=r"^(\d+)_")
    assert ds.num_train_pids == 2 and len(ds.train) == 8
    assert len(ds.query) == 4 and len(ds.gallery) == 4  # one query per (identity, camera)
    assert {it.pid for it in ds.query} == {7, 9}
    assert read_image(ds.query[0].path).mode == "RGB"  # JPEG data in a .png file


def test_custom_manifest(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(tmp_path / "img" / name)
    csv = tmp_path / "list.csv"
    csv.write_text(
        "path,pid,camid,split\nimg/a.jpg,4,0,train\nimg/b.jpg,5,1,query\nimg/c.jpg,5,0,gallery\n"
    )
    ds = build_dataset("custom", csv)
    assert [it.pid for it in ds.train] == [0]
    assert ds.query[0].pid == 5 and ds.query[0].path == str(tmp_path / "img" / "b.jpg")
    csv.write_text("path,pid,camid,split,colour\nimg/a.jpg,4,0,train,red\n")
    with pytest.raises(DatasetError, match="unknown column"):
        build_dataset("custom", csv)
    csv.write_text("path,pid,camid,split\nimg/a.jpg,four,0,train\n")
    with pytest.raises(DatasetError, match="line 2: pid 'four' is not an integer"):
        build_dataset("custom", csv)


def test_custom_col780_real(shared):
    root = shared / "data" / "col780" / "data"
    ds = build_dataset("custom", root, test_dir="val/all_imgs", camera_regex=r"^(\d+)_")
    assert ds.num_train_pids == 62 and len({it.pid for it in ds.query}) == 12
    assert read_image(ds.query[0].path).size == (48, 128)  # .png holding JPEG data


def test_read_image_modes_and_errors(tmp_path):
    from PIL import Image

    Image.new("L", (8, 8), 128).save(tmp_path / "gray.png")
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "gray.png").mode == "RGB"
    assert read_image(tmp_path / "rgba.png").getpixel((0, 0)) == (0, 0, 0)
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(DatasetError, match="not an image"):
        read_image(tmp_path / "text.jpg")
    full = write_image(tmp_path / "full.jpg", size=(64, 128)).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(full[: len(full) // 2])
    with pytest.raises(DatasetError, match="truncated"):
        read_image(tmp_path / "cut.jpg")
    with pytest.raises(DatasetError, match="not found"):
        read_image(tmp_path / "missing.jpg")


def test_validation_split_carves_training_identities_and_leaves_the_test_split(tmp_path):
    from attnreid.config import load_config
    from attnreid.engine.build import load_dataset

    campus = tmp_path / "cuhk01" / "campus"
    for pid in range(1, 13):
        for idx in range(1, 5):
            write_image(campus / f"{pid:04d}{idx:03d}.png", seed=pid * 10 + idx, fmt="PNG")
    ds = build_dataset("cuhk01", tmp_path / "cuhk01", num_train_ids=8, split_seed=0)
    overrides = [f"data.root={tmp_path / 'cuhk01'}", "data.options.num_train_ids=8"]
    cfg = load_config("baseline_cuhk01_cpu", [*overrides, "data.validation_ids=3"])
    val = load_dataset(cfg)
    # 3 of the 8 training identities become the validation query (camera A) / gallery (B)
    train_paths = {it.path for it in ds.train}
    held = {it.path for it in val.query} | {it.path for it in val.gallery}
    assert len(held) == 3 * 4 and held <= train_paths
    assert {it.path for it in val.train} == train_paths - held
    assert val.num_train_pids == 5 and sorted({it.pid for it in val.train}) == list(range(5))
    assert {it.camid for it in val.query} == {0} and {it.camid for it in val.gallery} == {1}
    assert {it.pid for it in val.query} == {it.pid for it in val.gallery}
    assert not {it.pid for it in val.query} & {it.pid for it in val.train}
    # never a test image; the same carve for the same seed, another for another seed
    assert not held & {it.path for it in ds.query + ds.gallery}
    assert {it.path for it in load_dataset(cfg).query} == {it.path for it in val.query}
    other = load_dataset(load_config("baseline_cuhk01_cpu", [*overrides, "data.validation_ids=3",
                                                            "data.validation_seed=1"]))  # fmt: skip
    assert {it.path for it in other.query} != {it.path for it in val.query}
    with pytest.raises(DatasetError, match="needs more training identities than that"):
        load_dataset(load_config("baseline_cuhk01_cpu", [*overrides, "data.validation_ids=8"]))
