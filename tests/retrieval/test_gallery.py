"""Folder scanning, crop metadata and the Python API round trip (build, add, search)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnreid.errors import ConfigError, DatasetError
from attnreid.evaluation.scoring import Scorer
from attnreid.retrieval import (
    GalleryIndex,
    export_checkpoint,
    extract_crops,
    load_feature_model,
    parse_crop_name,
    scan_folder,
)
from tests.conftest import write_image
from tests.retrieval.helpers import fake_checkpoint


def test_parse_crop_name():
    assert parse_crop_name("0002_c3s1_000451_03.jpg") == (2, 2, 451.0)
    pid, cam, t = parse_crop_name("/x/-1_c1_a.png")
    assert (pid, cam) == (-1, 0) and math.isnan(t)
    pid, cam, t = parse_crop_name("person.jpg")
    assert (pid, cam) == (-1, -1) and math.isnan(t)


def test_scan_folder_and_manifest(tmp_path):
    root = tmp_path / "crops"
    write_image(root / "0007_c2s1_000100_00.jpg")
    write_image(root / "sub" / "anon.png")
    (root / "notes.txt").write_text("not an image")
    crops = scan_folder(root)
    assert [p.split("crops/")[1] for p in crops.paths] == [
        "0007_c2s1_000100_00.jpg",
        "sub/anon.png",
    ]
    assert crops.pids.tolist() == [7, -1] and crops.camids.tolist() == [1, -1]
    assert crops.times[0] == 100.0 and math.isnan(crops.times[1])
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,pid,camid,time\nsub/anon.png,42,3,12.5\n")
    only = scan_folder(root, manifest)
    assert len(only) == 1 and (only.pids[0], only.camids[0], only.times[0]) == (42, 3, 12.5)
    manifest.write_text("path,pid\nsub/anon.png,abc\n")
    with pytest.raises(DatasetError, match="pid must be a number"):
        scan_folder(root, manifest)
    manifest.write_text("path\nmissing.jpg\n")
    with pytest.raises(DatasetError, match="does not exist"):
        scan_folder(root, manifest)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        scan_folder(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        scan_folder(tmp_path / "missing")


def test_python_api_round_trip(tmp_path, tiny_synth):
    ckpt = fake_checkpoint(tmp_path / "m.ckpt", tiny_synth)
    model, cfg, source = load_feature_model(checkpoint=ckpt)
    assert source["model"] == "resnet18" and source["feature_dim"] == 512
    assert model.config is cfg and index_metric(model, cfg) == "euclidean"
    files = sorted((tiny_synth / "bounding_box_test").iterdir())
    first = scan_folder(tiny_synth / "bounding_box_test", _manifest(tmp_path, files[:12]))
    second = scan_folder(tiny_synth / "bounding_box_test", _manifest(tmp_path, files[12:20]))
    index = GalleryIndex.build(
        extract_crops(model, cfg, first),
        first.paths,
        pids=first.pids,
        metric=index_metric(model, cfg),
        info=source,
    )
    index.add(extract_crops(model, cfg, second), second.paths, pids=second.pids)
    index = GalleryIndex.load(index.save(tmp_path / "g.index"))
    assert len(index) == 20
    queries = [second.paths[3], first.paths[5]]
    hits = index.search(extract_crops(model, cfg, queries), top_k=5)
    assert [h[0].path for h in hits] == queries  # each query's own image ranks first
    assert hits[0][0].distance < 1e-3 < hits[0][1].distance


def test_onnx_model_gives_the_same_features(tmp_path, tiny_synth):
    ckpt = fake_checkpoint(tmp_path / "m.ckpt", tiny_synth, **{"eval.metric": "cosine"})
    export_checkpoint(ckpt, tmp_path / "m.onnx")
    paths = sorted(str(p) for p in (tiny_synth / "query").iterdir())[:6]
    a = extract_crops(*load_feature_model(checkpoint=ckpt)[:2], paths)
    model, cfg, source = load_feature_model(onnx=tmp_path / "m.onnx")
    assert index_metric(model, cfg) == "cosine" and source["model"] == "resnet18"
    b = extract_crops(model, cfg, paths)
    assert float((a - b).abs().max()) <= 1e-4 * max(1.0, float(a.abs().max()))
    with pytest.raises(ConfigError, match="exactly one"):
        load_feature_model()


def index_metric(model, cfg) -> str:
    return Scorer.from_config(model, cfg["eval"]).index_metric


def test_a_model_written_by_an_older_version_still_loads(tmp_path, tiny_synth):
    """Its stored config may hold keys this version no longer has (eval.block_threshold)."""
    ckpt = fake_checkpoint(tmp_path / "m.ckpt", tiny_synth)
    old = torch.load(ckpt, weights_only=True)
    old["hyper_parameters"]["config"]["eval"]["block_threshold"] = 1 << 26
    torch.save(old, ckpt)
    model, cfg, _ = load_feature_model(checkpoint=ckpt, overrides=["eval.flip=false"])
    assert "block_threshold" not in cfg["eval"] and model.config["eval"]["flip"] is False
    with pytest.raises(ConfigError, match="unknown config key 'eval.block_threshold'"):
        load_feature_model(checkpoint=ckpt, overrides=["eval.block_threshold=1"])


def _manifest(tmp_path, files):
    path = tmp_path / f"m{len(files)}_{files[0].stem}.csv"
    path.write_text("path\n" + "".join(f"{f.name}\n" for f in files))
    return path


def test_sequence_features_cannot_be_indexed():
    with pytest.raises(ConfigError, match="one feature vector per image"):
        GalleryIndex.build(np.zeros((3, 4, 8)), ["a", "b", "c"])
