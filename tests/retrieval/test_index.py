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
    # no temporary file left (SQLite's own -wal and -shm live while the file is open)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))] == [
        "g.index"
    ]


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
    from attnreid.retrieval import index_file

    path = GalleryIndex.build(gallery(4), list("abcd")).save(tmp_path / "g.index")
    before = path.read_bytes()
    bigger = GalleryIndex.build(gallery(6), list("abcdef"))
    real = index_file._insert

    def boom(conn, first, feats, *columns):
        real(conn, first, feats[:2], *(c[:2] for c in columns))  # part of the rows, then
        raise OSError("disk full")

    monkeypatch.setattr(index_file, "_insert", boom)
    with pytest.raises(OSError, match="disk full"):
        bigger.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))] == [
        "g.index"
    ]  # no temporary file
    monkeypatch.undo()
    assert GalleryIndex.load(path).paths == list("abcd")


def test_saving_over_an_open_index_replaces_it_whole(tmp_path):
    """``save`` over an index file that is open and has appended rows (in SQLite's log, the
    ``-wal``) gives exactly the new index: the new file is never paired with the old log."""
    path = GalleryIndex.build(gallery(50, seed=1), [f"a{i}" for i in range(50)]).save(
        tmp_path / "g.index"
    )
    reader = GalleryIndex.load(path)
    opened = GalleryIndex.load(path)
    opened.add(gallery(30, seed=2), [f"b{i}" for i in range(30)])  # committed to the log
    new = GalleryIndex.build(gallery(5, seed=3), [f"c{i}" for i in range(5)], info={"x": 1})
    new.save(path)
    again = GalleryIndex.load(path)
    assert (again.paths, again.info) == ([f"c{i}" for i in range(5)], {"x": 1})
    np.testing.assert_allclose(
        np.stack([again.vector(i) for i in range(5)]), np.stack([new.vector(i) for i in range(5)])
    )
    assert reader.refresh() and reader.info == {"x": 1}  # the open ones see the new file


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_filtered_search_pages_equal_brute_force(tmp_path, metric, kind):
    """A flat or hnsw index, filtered by cameras and a time window (unknown times fall outside
    it) and with one item left out, page after page: the ranking numpy gives the filtered
    gallery (a filter keeping few items is searched exactly), also for several queries at
    once, and ``count`` its size."""
    rng = np.random.default_rng(3)
    n = 400
    feats = gallery(n, seed=4)
    camids = rng.integers(0, 6, n)
    times = rng.uniform(0, 100, n)
    times[rng.random(n) < 0.1] = np.nan
    index = GalleryIndex.build(feats, [f"{i}.jpg" for i in range(n)], camids=camids, times=times,
                               metric=metric, kind=kind)  # fmt: skip
    index = GalleryIndex.load(index.save(tmp_path / "g.index"))
    query, left_out = gallery(1, seed=5), 17
    d = compute_distance(torch.from_numpy(query), torch.from_numpy(feats), metric).numpy()[0]
    filters = {"cameras": [1, 4, 5], "time_from": 20.0, "time_to": 75.0, "exclude": left_out}
    keep = np.isin(camids, [1, 4, 5]) & (times >= 20) & (times <= 75)
    keep[left_out] = False
    order = [int(i) for i in np.argsort(d, kind="stable") if keep[i]]
    assert index.count(**filters) == keep.sum() == len(order) and 20 < len(order) < n / 2
    for offset in range(0, len(order) + 10, 10):
        hits = index.search(query, 10, offset=offset, **filters)[0]
        assert [h.id for h in hits] == order[offset : offset + 10]
        assert [h.rank for h in hits] == list(range(offset + 1, offset + 1 + len(hits)))
        np.testing.assert_allclose([h.distance for h in hits], d[order[offset : offset + 10]],
                                   atol=1e-4)  # fmt: skip
    both = np.vstack([gallery(1, seed=8), query])  # several queries at once: each its own
    _, ids = index.search_arrays(both, 10, **filters)
    assert ids[1].tolist() == order[:10] and ids[0].tolist() != ids[1].tolist()
    assert ids[0].tolist() == index.search_arrays(both[:1], 10, **filters)[1][0].tolist()
    assert index.count() == n and index.count(cameras=[7]) == 0
    assert index.search(query, 5, cameras=[7]) == [[]]
    index.add(gallery(2, seed=6), ["new7.jpg", "new9.jpg"], camids=[7, 9])  # larger camids
    assert [h.path for h in index.search(query, 5, cameras=[7, 9])[0]] in (
        ["new7.jpg", "new9.jpg"], ["new9.jpg", "new7.jpg"])  # fmt: skip
    assert index.count(cameras=[1]) == (camids == 1).sum()  # a table sized past camid 9


def test_an_append_to_a_file_written_anew_meanwhile_is_refused(tmp_path):
    """A server holds the index open; ``index build -o`` writes a smaller one in its place; the
    server's next addition is refused (its id would leave a gap: a file no one could open) and
    the new file stays whole."""
    path = GalleryIndex.build(gallery(50, seed=1), [f"a{i}" for i in range(50)]).save(
        tmp_path / "g.index"
    )
    server = GalleryIndex.load(path)
    GalleryIndex.build(gallery(5, seed=2), [f"c{i}" for i in range(5)]).save(path)
    with pytest.raises(AttnReidError, match=rf"^gallery index {path} was written anew by another "
                       r"process \(5 rows, 50 here\): open it again$"):  # fmt: skip
        server.add(gallery(1, seed=3), ["new"])
    assert GalleryIndex.load(path).paths == [f"c{i}" for i in range(5)]
