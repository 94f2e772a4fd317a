"""GalleryIndex: build, add, search, save, load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnreid.errors import AttnReidError, ConfigError
from attnreid.retrieval import GalleryIndex
from attnreid.utils.distance import compute_distance


def gallery(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_round_trip_build_add_search_save_load(tmp_path, metric):
    a, b = gallery(50, seed=1), gallery(30, seed=2)
    paths_a = [f"a/{i}.jpg" for i in range(50)]
    paths_b = [f"b/{i}.jpg" for i in range(30)]
    index = GalleryIndex.build(
        a,
        paths_a,
        pids=np.arange(50) % 7,
        camids=np.arange(50) % 3,
        metric=metric,
        info={"model": "toy"},
    )
    index.add(b, paths_b, times=np.arange(30) * 1.5)
    assert len(index) == 80
    # every image finds itself first, at distance 0
    hits = index.search(np.concatenate([a[:5], b[-3:]]), top_k=4)
    assert [h[0].path for h in hits] == paths_a[:5] + paths_b[-3:]
    assert all(abs(h[0].distance) < 1e-5 and h[0].rank == 1 for h in hits)
    # the distances and order are those of evaluation
    everything = np.concatenate([a, b])
    d = compute_distance(torch.from_numpy(a[:5]), torch.from_numpy(everything), metric).numpy()
    dist, idx = index.search_arrays(a[:5], top_k=10)
    np.testing.assert_array_equal(idx, np.argsort(d, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(dist, np.sort(d, axis=1)[:, :10], atol=1e-4)
    # metadata: given, or unknown
    first = hits[0][0]
    assert (first.pid, first.camid) == (0, 0) and math.isnan(first.time)
    last = hits[-1][0]
    assert (last.pid, last.camid, last.time) == (-1, -1, 29 * 1.5)
    assert last.as_dict()["time"] == 43.5 and first.as_dict()["time"] is None

    path = index.save(tmp_path / "g.index")
    again = GalleryIndex.load(path)
    assert (again.metric, again.dim, again.info, again.paths) == (
        metric,
        16,
        {"model": "toy"},
        index.paths,
    )
    np.testing.assert_array_equal(again.search_arrays(a[:5], 10)[1], idx)
    again.add(gallery(3, seed=9), ["c/0.jpg", "c/1.jpg", "c/2.jpg"])  # incremental after loading
    again.save(path)
    assert len(GalleryIndex.load(path)) == 83
    assert [p.name for p in tmp_path.iterdir()] == ["g.index"]  # no temporary file left


@pytest.mark.parametrize(("kind", "params"), [("ivf", {"nprobe": 64}), ("hnsw", {"hnsw_m": 16})])
def test_approximate_indexes_find_the_image_itself(tmp_path, kind, params):
    feats = gallery(800, dim=32)
    index = GalleryIndex.build(feats[:600], [f"{i}" for i in range(600)], kind=kind, **params)
    index.add(feats[600:], [f"{i}" for i in range(600, 800)])
    index = GalleryIndex.load(index.save(tmp_path / "x.index"))
    assert index.kind == kind
    found = [h[0].id for h in index.search(feats[::20], top_k=3)]
    assert found == list(range(0, 800, 20))
    if kind == "ivf":
        assert 1 <= index.params["nlist"] <= 600 // 39


def test_items_and_the_model_file_of_older_headers():
    """``item(i)`` is the search record without rank or distance; the model file comes from
    ``info["model_file"]``, or from the ``checkpoint`` / ``onnx`` keys older indexes wrote."""
    index = GalleryIndex.build(gallery(3), ["a/0001_c2s1_000100_00.jpg", "b", "c"], pids=[1, -1, 2],
                               camids=[1, -1, 0], times=[100.0, np.nan, 5.0])  # fmt: skip
    item = index.item(0)
    assert (item.id, item.path, item.pid, item.camid, item.time) == (
        0, "a/0001_c2s1_000100_00.jpg", 1, 1, 100.0,
    )  # fmt: skip
    assert (item.rank, item.distance, item.verdict) == (None, None, None)
    assert index.item(1).as_dict() == {
        "id": 1, "rank": None, "distance": None, "name": "b", "pid": None, "camera": None,
        "time": None, "verdict": None, "path": "b",
    }  # fmt: skip
    shown = item.as_dict(path=False)  # the server's form: no file path
    assert shown["camera"] == 2 and shown["name"] == "0001_c2s1_000100_00.jpg"
    assert "path" not in shown
    hit = index.search(gallery(3)[2:], top_k=1)[0][0]
    assert (hit.id, hit.rank, hit.path, hit.pid) == (2, 1, "c", 2)
    with pytest.raises(IndexError):
        index.item(3)
    assert index.model_file is None
    for info, expected in [
        ({"model_file": "/m/new.ckpt", "checkpoint": "/m/old.ckpt"}, "/m/new.ckpt"),
        ({"checkpoint": "/m/old.ckpt"}, "/m/old.ckpt"),
        ({"onnx": "/m/old.onnx"}, "/m/old.onnx"),
    ]:
        assert GalleryIndex(16, info={"model": "toy", **info}).model_file == expected


def test_top_k_larger_than_the_gallery():
    index = GalleryIndex.build(gallery(3), ["x", "y", "z"])
    hits = index.search(gallery(2, seed=5), top_k=10)
    assert [len(h) for h in hits] == [3, 3] and [h.rank for h in hits[0]] == [1, 2, 3]


def test_errors(tmp_path):
    index = GalleryIndex.build(gallery(4), list("abcd"))
    with pytest.raises(ConfigError, match="dimension 8 but the index holds dimension 16"):
        index.add(gallery(2, dim=8), ["e", "f"])
    with pytest.raises(ConfigError, match="2 features but 1 paths"):
        index.add(gallery(2), ["e"])
    with pytest.raises(ConfigError, match="2 features but 3 pids"):
        index.add(gallery(2), ["e", "f"], pids=[1, 2, 3])
    with pytest.raises(ConfigError, match="NaN"):
        index.add(np.full((1, 16), np.nan), ["e"])
    with pytest.raises(ConfigError, match="top_k"):
        index.search(gallery(1), top_k=0)
    with pytest.raises(ConfigError, match="index kind must be one of flat, ivf, hnsw"):
        GalleryIndex(16, kind="lsh")
    with pytest.raises(ConfigError, match="empty"):
        GalleryIndex(16).save(tmp_path / "empty.index")
    (tmp_path / "junk.index").write_bytes(b"not an index")
    with pytest.raises(AttnReidError, match="is not a readable gallery index"):
        GalleryIndex.load(tmp_path / "junk.index")
    with pytest.raises(AttnReidError, match="does not exist"):
        GalleryIndex.load(tmp_path / "missing.index")


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = GalleryIndex.build(gallery(4), list("abcd")).save(tmp_path / "g.index")
    before = path.read_bytes()
    bigger = GalleryIndex.build(gallery(6), list("abcdef"))

    def boom(fh, **arrays):
        fh.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        bigger.save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["g.index"]
