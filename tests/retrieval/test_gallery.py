"""Folder scanning, crop metadata and the Python API round trip (build, add, search)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import attnreid
from attnreid.errors import ConfigError, DatasetError
from attnreid.evaluation.scoring import Scorer
from attnreid.retrieval import GalleryIndex, export_onnx, parse_crop_name, scan_folder
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
    extractor = attnreid.load(ckpt)
    model, cfg, source = extractor.model, extractor.config, extractor.source
    assert source["model"] == "resnet18" and source["feature_dim"] == 512
    assert source["model_file"] == str(ckpt.resolve()) and source["epoch"] == 0
    assert (source["height"], source["width"]) == extractor.size == (64, 32)
    assert model.config is cfg and index_metric(model, cfg) == "euclidean"
    files = sorted((tiny_synth / "bounding_box_test").iterdir())
    first = scan_folder(tiny_synth / "bounding_box_test", _manifest(tmp_path, files[:12]))
    second = scan_folder(tiny_synth / "bounding_box_test", _manifest(tmp_path, files[12:20]))
    index = GalleryIndex.build(
        extractor.extract(first.items()).features,
        first.paths,
        pids=first.pids,
        metric=index_metric(model, cfg),
        info=source,
    )
    index.add(extractor.extract(second.items()).features, second.paths, pids=second.pids)
    index = GalleryIndex.load(index.save(tmp_path / "g.index"))
    assert len(index) == 20
    queries = [second.paths[3], first.paths[5]]
    hits = index.search(extractor.extract(queries).features, top_k=5)
    assert [h[0].path for h in hits] == queries  # each query's own image ranks first
    assert hits[0][0].distance < 1e-3 < hits[0][1].distance


def test_onnx_model_gives_the_same_features(tmp_path, tiny_synth):
    ckpt = fake_checkpoint(tmp_path / "m.ckpt", tiny_synth, **{"eval.metric": "cosine"})
    torch_ext = attnreid.load(ckpt)
    h, w = torch_ext.size
    export_onnx(torch_ext.model, tmp_path / "m.onnx", height=h, width=w, config=torch_ext.config)
    paths = sorted(str(p) for p in (tiny_synth / "query").iterdir())[:6]
    a = attnreid.load(ckpt).extract(paths).features
    onnx_ext = attnreid.load(tmp_path / "m.onnx")
    model, cfg, source = onnx_ext.model, onnx_ext.config, onnx_ext.source
    assert index_metric(model, cfg) == "cosine" and source["model"] == "resnet18"
    assert source["model_file"] == str((tmp_path / "m.onnx").resolve()) and onnx_ext.size == (h, w)
    b = onnx_ext.extract(paths).features
    assert float((a - b).abs().max()) <= 1e-4 * max(1.0, float(a.abs().max()))
    with pytest.raises(ConfigError, match="give a model file"):
        attnreid.load()
    with pytest.raises(ConfigError, match="an untrained model is built from a config"):
        attnreid.load(ckpt, untrained=True)


def index_metric(model, cfg) -> str:
    return Scorer.from_config(model, cfg["eval"]).index_metric


def test_a_model_written_by_an_older_version_still_loads(tmp_path, tiny_synth):
    """Its stored config may hold keys this version no longer has (eval.block_threshold)."""
    ckpt = fake_checkpoint(tmp_path / "m.ckpt", tiny_synth)
    old = torch.load(ckpt, weights_only=True)
    old["hyper_parameters"]["config"]["eval"]["block_threshold"] = 1 << 26
    torch.save(old, ckpt)
    extractor = attnreid.load(ckpt, overrides=["eval.flip=false"])
    model, cfg = extractor.model, extractor.config
    assert "block_threshold" not in cfg["eval"] and model.config["eval"]["flip"] is False
    assert extractor.flip is False
    with pytest.raises(ConfigError, match="unknown config key 'eval.block_threshold'"):
        attnreid.load(ckpt, overrides=["eval.block_threshold=1"])


def _manifest(tmp_path, files):
    path = tmp_path / f"m{len(files)}_{files[0].stem}.csv"
    path.write_text("path\n" + "".join(f"{f.name}\n" for f in files))
    return path


def test_sequence_features_cannot_be_indexed():
    with pytest.raises(ConfigError, match="one feature vector per image"):
        GalleryIndex.build(np.zeros((3, 4, 8)), ["a", "b", "c"])
