from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnreid.data import build_dataset
from attnreid.data.datasets import cuhk03_extract
from attnreid.data.datasets.cuhk03_extract import extract_images
from attnreid.data.stats import compare_with_published
from attnreid.errors import DatasetError
from tests.data.cuhk03_mat import write_raw_mat, write_split_mat
from tests.data.trees import touch_images


def _img(seed: int, h: int = 12, w: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _raw_release(root: Path) -> dict[str, np.ndarray]:
    """Two camera pairs (3 + 2 identities) with empty cells; 2 classic test sets."""
    images: dict[str, np.ndarray] = {}
    pairs: dict[str, list] = {"labeled": [], "detected": []}
    seed = 0
    for kind in pairs:
        for p, n_ids in ((1, 3), (2, 2)):
            pair = []
            for i in range(1, n_ids + 1):
                row: list = []
                for j in range(1, 11):
                    if (p, i) == (1, 2) and j in (4, 5, 10):  # some views have fewer images
                        row.append(None)
                        continue
                    seed += 1
                    arr = _img(seed, h=12 + j, w=5 + i)
                    row.append(arr)
                    images[f"{kind}/{p}_{i:03d}_{1 if j <= 5 else 2}_{j:02d}.png"] = arr
                pair.append(row)
            pairs[kind].append(pair)
    write_raw_mat(
        root / "cuhk03_release" / "cuhk-03.mat",
        pairs["labeled"],
        pairs["detected"],
        [[(1, 2), (2, 1)], [(1, 1)]],
    )
    return images


def test_extraction_names_pixels_and_idempotence(tmp_path):
    expected = _raw_release(tmp_path)
    mat = tmp_path / "cuhk03_release" / "cuhk-03.mat"
    folder, written = extract_images(mat, "labeled", tmp_path, progress=False)
    assert folder == tmp_path / "images_labeled" and written == 47
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(k.split("/")[1] for k in expected if k.startswith("labeled/"))
    assert "1_002_1_04.png" not in names and "1_002_2_10.png" not in names  # empty cells
    for name in ("1_001_1_01.png", "2_002_2_07.png"):
        got = np.asarray(Image.open(folder / name))
        assert np.array_equal(got, expected[f"labeled/{name}"])  # H x W x 3, not transposed
    assert extract_images(mat, "labeled", tmp_path, progress=False) == (folder, 0)
    assert not (tmp_path / "images_labeled.partial").exists()


def test_extraction_is_safe_to_interrupt(tmp_path, monkeypatch):
    _raw_release(tmp_path)
    mat = tmp_path / "cuhk03_release" / "cuhk-03.mat"
    real_save = cuhk03_extract._save_png
    calls = {"n": 0}

    def dying_save(arr, target):
        calls["n"] += 1
        if calls["n"] == 6:
            (target.parent / f".{target.name}.tmp").write_bytes(b"half a png")
            raise KeyboardInterrupt
        real_save(arr, target)

    monkeypatch.setattr(cuhk03_extract, "_save_png", dying_save)
    with pytest.raises(KeyboardInterrupt):
        extract_images(mat, "detected", tmp_path, progress=False)
    partial = tmp_path / "images_detected.partial"
    assert not (tmp_path / "images_detected").exists()
    assert len(list(partial.glob("*.png"))) == 5
    monkeypatch.setattr(cuhk03_extract, "_save_png", real_save)
    folder, written = extract_images(mat, "detected", tmp_path, progress=False)
    assert written == 47 - 5  # continues where it stopped
    assert len(list(folder.iterdir())) == 47 and not partial.exists()
    assert not list(folder.glob(".*"))  # the stale temporary file is gone


def test_classic_protocol_from_raw_release(tmp_path):
    _raw_release(tmp_path)
    ds = build_dataset("cuhk03", tmp_path, protocol="classic", split_id=0)  # extracts once
    assert (tmp_path / "images_labeled").is_dir() and not (tmp_path / "images_detected").exists()
    assert ds.eval_mode == "cuhk03"
    # identities are numbered by (camera pair, identity): (1,1)=1 (1,2)=2 (1,3)=3 (2,1)=4 (2,2)=5
    assert {it.pid for it in ds.query} == {2, 4}
    assert ds.query == ds.gallery
    assert sorted({it.pid for it in ds.train}) == [0, 1, 2]  # 1, 3, 5 relabelled
    assert {it.camid for it in ds.train} == {0, 1}
    assert "train ids: 3 here, 1,367 published" in compare_with_published(ds)[0]
    other = build_dataset("cuhk03", tmp_path, protocol="classic", split_id=1, images="detected")
    assert {it.pid for it in other.query} == {1} and "detected" in other.query[0].path
    with pytest.raises(DatasetError, match="split_id must be in 0..1"):
        build_dataset("cuhk03", tmp_path, protocol="classic", split_id=5)


def _split_file(path: Path) -> list[str]:
    names = [f"1_{i:03d}_{v}_{j:02d}.png" for i in (1, 2, 3, 4) for v, j in ((1, 1), (2, 6))]
    labels = [i for i in (1, 2, 3, 4) for _ in range(2)]
    cams = [1, 2] * 4
    # identities 1, 2 train; 3, 4 test: query = their camera-1 images, gallery = camera 2
    write_split_mat(path, names, labels, cams, [1, 2, 3, 4], [5, 7], [6, 8])
    return names


def test_new_protocol_split_file(tmp_path):
    names = _split_file(tmp_path / "cuhk03_new_protocol_config_detected.mat")
    touch_images(tmp_path / "images_detected", names)
    ds = build_dataset("cuhk03", tmp_path, images="detected")
    assert ds.eval_mode == "market" and ds.info["protocol"] == "new"
    assert [it.pid for it in ds.train] == [0, 0, 1, 1]
    assert [(it.pid, it.camid) for it in ds.query] == [(3, 0), (4, 0)]
    assert [(it.pid, it.camid) for it in ds.gallery] == [(3, 1), (4, 1)]
    assert ds.query[0].path == str(tmp_path / "images_detected" / "1_003_1_01.png")
    (tmp_path / "images_detected" / names[-1]).unlink()
    with pytest.raises(DatasetError, match=r"1 of the 8 images .* missing .*1_004_2_06.png"):
        build_dataset("cuhk03", tmp_path, images="detected")
    with pytest.raises(DatasetError, match="missing split file .*labeled.mat"):
        build_dataset("cuhk03", tmp_path)


def test_new_protocol_errors(tmp_path):
    (tmp_path / "images_labeled").mkdir()
    write_split_mat(tmp_path / "s.mat", ["person1.png"], [1], [1], [1], [1], [1])
    with pytest.raises(DatasetError, match="lists 'person1.png', which is not a CUHK03"):
        build_dataset("cuhk03", tmp_path, split_file=str(tmp_path / "s.mat"))
    from scipy.io import savemat

    savemat(tmp_path / "t.mat", {"labels": np.ones((1, 1))})
    with pytest.raises(DatasetError, match="lacks the field.* filelist"):
        build_dataset("cuhk03", tmp_path, split_file=str(tmp_path / "t.mat"))
    (tmp_path / "x").mkdir()
    with pytest.raises(DatasetError, match=r"missing split file .*found: "):
        build_dataset("cuhk03", tmp_path / "x")
    with pytest.raises(DatasetError, match="images must be one of labeled, detected, got 'both'"):
        build_dataset("cuhk03", tmp_path, images="both")


def test_cuhk03_np_layout(make_market, tmp_path):
    files = {
        "bounding_box_train": ["0001_c1_1.png", "0001_c2_2.png", "0004_c1_1.png"],
        "query": ["0010_c1_1.png"],
        "bounding_box_test": ["0010_c2_1.png", "0011_c1_1.png"],
    }
    make_market(files, tmp_path / "cuhk03-np" / "labeled")
    make_market(files, tmp_path / "cuhk03-np" / "detected")
    ds = build_dataset("cuhk03", tmp_path)
    assert ds.info["layout"] == "cuhk03-np" and ds.root == tmp_path / "cuhk03-np" / "labeled"
    assert sorted({it.pid for it in ds.train}) == [0, 1]
    assert [(it.pid, it.camid) for it in ds.query] == [(10, 0)]
    det = build_dataset("cuhk03", tmp_path / "cuhk03-np", images="detected")
    assert det.root.name == "detected"
    assert build_dataset("cuhk03", tmp_path / "cuhk03-np" / "labeled").num_train_pids == 2
    with pytest.raises(DatasetError, match="holds the CUHK03-NP detected images"):
        build_dataset("cuhk03", tmp_path / "cuhk03-np" / "detected", images="labeled")
    with pytest.raises(DatasetError, match="classic protocol needs the raw release"):
        build_dataset("cuhk03", tmp_path, protocol="classic")


@pytest.mark.parametrize(
    "kind, sizes", [("labeled", (7368, 1400, 5328)), ("detected", (7365, 1400, 5332))]
)
def test_real_split_files(shared, tmp_path, kind, sizes):
    from scipy.io import loadmat

    split = shared / "data" / "cuhk03_np_splits" / f"cuhk03_new_protocol_config_{kind}.mat"
    names = [str(x[0][0]) for x in loadmat(split)["filelist"]]
    touch_images(tmp_path / f"images_{kind}", names)
    shutil.copy(split, tmp_path / split.name)  # the layout torchreid users have
    ds = build_dataset("cuhk03", tmp_path, images=kind)
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == sizes
    assert ds.num_train_pids == 767 and sorted({it.pid for it in ds.train}) == list(range(767))
    assert len({it.pid for it in ds.query}) == len({it.pid for it in ds.gallery}) == 700
    assert {it.pid for it in ds.query} == {it.pid for it in ds.gallery}
    assert {it.camid for it in ds.query} == {0, 1}
    elsewhere = tmp_path / "no_split_here"
    elsewhere.mkdir()
    (elsewhere / f"images_{kind}").symlink_to(tmp_path / f"images_{kind}")
    again = build_dataset("cuhk03", elsewhere, images=kind, split_file=str(split))
    assert [it.pid for it in again.gallery] == [it.pid for it in ds.gallery]
