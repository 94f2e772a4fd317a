"""The search service's JSON API, against rankings computed independently of it."""

from __future__ import annotations

import gc
import json
import os
import shutil
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import attnreid
from attnreid.errors import AttnReidError
from attnreid.evaluation.extractor import FeatureExtractor
from attnreid.retrieval import GalleryIndex
from attnreid.retrieval.calibration import Verdicts
from attnreid.serve import GalleryStore, create_app
from tests.retrieval.helpers import build_index, fake_checkpoint

HOSTS = ("testserver",)  # the Host that Starlette's TestClient sends


@pytest.fixture(scope="module")
def served(tiny_synth: Path, tmp_path_factory: pytest.TempPathFactory):
    """A gallery index of the tiny synthetic gallery and the features of every file."""
    tmp = tmp_path_factory.mktemp("serve")
    ckpt = fake_checkpoint(tmp / "m.ckpt", tiny_synth)
    index = build_index(ckpt, tiny_synth / "bounding_box_test", tmp / "g.index")
    return index, attnreid.load(ckpt)


@pytest.fixture
def client(served, tmp_path):
    index_file, extractor = served
    copy = tmp_path / "g.index"  # each test may add crops: its own copy of the index
    copy.write_bytes(index_file.read_bytes())
    store = GalleryStore(copy)
    app = create_app(store, extractor, Verdicts(max_distance=1e-3), max_upload=200_000,
                     max_pixels=1_000_000, allowed_hosts=HOSTS)  # fmt: skip
    return TestClient(app), store, extractor


def _ranking(store: GalleryStore, extractor: FeatureExtractor, image: Path) -> list[int]:
    """Item ids by squared euclidean distance to the image, computed here with numpy."""
    paths = store.index.paths
    feats = extractor([Image.open(p).convert("RGB") for p in paths])
    q = extractor([Image.open(image).convert("RGB")])[0]
    d = ((feats - q) ** 2).sum(1)
    return [int(i) for i in np.argsort(d, kind="stable")]


def _post(client: TestClient, path: str, image: Path | bytes | None = None, name="q.jpg", **form):
    files = None
    if image is not None:
        data = image.read_bytes() if isinstance(image, Path) else image
        files = {"image": (name, data, "application/octet-stream")}
    return client.post(path, files=files, data={k: str(v) for k, v in form.items()})


def test_search_ranks_as_numpy_and_pages(client):
    http, store, extractor = client
    query = sorted((Path(store.index.paths[0]).parent.parent / "query").iterdir())[0]
    expected = _ranking(store, extractor, query)
    got = _post(http, "/api/search", query, top=5).json()
    assert got["total"] == len(store) and [r["id"] for r in got["results"]] == expected[:5]
    page2 = _post(http, "/api/search", query, top=5, offset=5).json()
    assert [r["id"] for r in page2["results"]] == expected[5:10]
    assert [r["rank"] for r in page2["results"]] == list(range(6, 11))
    assert all("path" not in r for r in got["results"])  # no server path is shown


def test_gallery_crop_as_query_finds_its_own_sightings(client):
    http, store, extractor = client
    crop = 3
    expected = [i for i in _ranking(store, extractor, Path(store.index.paths[crop])) if i != crop]
    got = _post(http, "/api/search", crop_id=crop, top=6).json()
    assert got["query"]["crop"]["id"] == crop
    assert [r["id"] for r in got["results"]] == expected[:6]
    assert got["total"] == len(store) - 1


def test_camera_and_time_filters(client):
    http, store, extractor = client
    m = store.index.meta
    query = Path(store.index.paths[0])
    cams = sorted({int(c) for c in m.camids})[:2]
    lo, hi = np.nanpercentile(m.times, [20, 80])
    keep = np.isin(m.camids, cams) & (m.times >= lo) & (m.times <= hi)
    expected = [i for i in _ranking(store, extractor, query) if keep[i]]
    got = _post(
        http,
        "/api/search",
        query,
        top=100,
        cameras=",".join(str(c + 1) for c in cams),
        time_from=lo,
        time_to=hi,
    ).json()
    assert got["total"] == int(keep.sum()) and [r["id"] for r in got["results"]] == expected
    assert {r["camera"] for r in got["results"]} <= {c + 1 for c in cams}


def test_added_crop_is_saved_and_found(client, tiny_synth):
    http, store, _ = client
    new = sorted((tiny_synth / "query").iterdir())[-1]
    n = len(store)
    before = http.get("/api/info").json()
    added = _post(http, "/api/crops", new, name=new.name, camera=2, time=12.5).json()
    assert (added["id"], added["camera"], added["time"]) == (n, 2, 12.5)
    info = http.get("/api/info").json()  # the summary follows the added row
    assert info["size"] == n + 1 and info["cameras"] == sorted({*before["cameras"], 2})
    m = store.index.meta
    times = m.times[np.isfinite(m.times)]
    assert info["time_range"] == [float(times.min()), float(times.max())]
    assert max(info["time_range"]) >= 12.5
    on_disk = GalleryIndex.load(store.path)  # acknowledged = written
    stored = on_disk.resolve(on_disk.paths[n])  # beside the index, named relative to it
    assert len(on_disk) == n + 1 and stored.read_bytes() == new.read_bytes()
    assert not Path(on_disk.paths[n]).is_absolute() and stored.parent == store.crops_dir
    top = _post(http, "/api/search", new, top=1).json()["results"][0]
    assert top["id"] == n and top["distance"] == pytest.approx(0, abs=1e-4)
    assert top["verdict"] == "match"  # max distance 1e-3
    assert http.get(f"/api/crops/{n}/image").content == new.read_bytes()


def test_concurrent_uploads_lose_nothing(client, tiny_synth):
    http, store, _ = client
    n = len(store)
    files = sorted((tiny_synth / "bounding_box_train").iterdir())[:12]
    with ThreadPoolExecutor(6) as pool:
        ids = list(
            pool.map(lambda f: _post(http, "/api/crops", f, name=f.name).json()["id"], files)
        )
    assert sorted(ids) == list(range(n, n + 12))
    on_disk = GalleryIndex.load(store.path)
    names = {on_disk.resolve(p).read_bytes() for p in on_disk.paths[n:]}
    assert len(on_disk) == n + 12 and names == {f.read_bytes() for f in files}


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("request_", "status", "error"),
    [
        (
            ("/api/search", b"hello", {}),
            400,
            "not an image of an accepted format (JPEG, PNG, BMP, WEBP, TIFF): q.jpg",
        ),
        (("/api/search", None, {}), 400, "the form has no 'image' file"),
        (
            ("/api/search", _png_header(2000, 1000), {}),
            400,
            "image q.jpg has 2000x1000 pixels, more than the 1,000,000 allowed",
        ),
        (
            ("/api/search", _png_header(30000, 30000), {}),
            400,
            "image q.jpg has more than 178,956,970 pixels: refused as a possible decompression",
        ),
        (("/api/search", None, {"crop_id": 10**6}), 404, "no crop 1000000 (the gallery has"),
        (
            ("/api/search", None, {"crop_id": "x"}),
            400,
            "crop_id: Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            ("/api/search", None, {"crop_id": 1, "top": 0}),
            400,
            "top: Input should be greater than or equal to 1",
        ),
        (
            ("/api/search", None, {"crop_id": 1, "cameras": "a"}),
            400,
            "cameras must be numbers separated by commas, got 'a'",
        ),
        (
            ("/api/crops", b"\0" * 300_000, {}),
            413,
            "request body over the limit of 265,536 bytes",  # max_upload + 64 KiB of form
        ),
    ],
)
def test_bad_requests_are_one_line_4xx(client, request_, status, error):
    http, store, _ = client
    n = len(store)
    path, image, form = request_
    res = _post(http, path, image, **form)
    assert res.status_code == status and res.json()["error"].startswith(error), res.json()
    assert "\n" not in res.json()["error"] and len(GalleryIndex.load(store.path)) == n


def test_only_indexed_images_are_served(client, tmp_path):
    http, store, _ = client
    # every item's image is the file the index names, byte for byte
    for i in range(len(store)):
        res = http.get(f"/api/crops/{i}/image")
        assert res.status_code == 200 and res.content == Path(store.item(i).path).read_bytes()
    # files beside the index or the crops, named by path in any spelling, are not reachable
    secret = store.path.parent / "secret.png"
    secret.write_bytes(Path(store.item(0).path).read_bytes())
    for url in (
        "/api/crops/secret.png/image",
        "/api/crops/..%2Fsecret.png/image",
        f"/api/crops/{secret}/image",
        "/static/..%2Fsecret.png",
        "/static/..%2Fstore.py",
        "/secret.png",
    ):
        res = http.get(url)
        assert res.status_code in (400, 404) and res.content != secret.read_bytes(), url
    assert http.get(f"/api/crops/{len(store)}/image").json()["error"].startswith("no crop ")
    res = http.get("/api/crops/abc/image")
    assert res.status_code == 400 and res.json()["error"].startswith("item_id: ")
    # an indexed item whose file went missing: 404 with a reason, nothing else served
    Path(store.item(1).path).rename(tmp_path / "moved.png")
    try:
        res = http.get("/api/crops/1/image")
        assert (res.status_code, res.json()) == (
            404,
            {"error": "the image of crop 1 is missing on the server"},
        )
    finally:
        (tmp_path / "moved.png").rename(store.item(1).path)


def test_attention_endpoint_draws_what_viz_attention_draws(tiny_synth, tmp_path):
    """POST /api/attention (an upload, or a gallery crop) gives the very PNG that ``attnreid
    viz attention`` writes for the same image and model; a model without attention is a 400."""
    from attnreid.cli.main import main

    ckpt = fake_checkpoint(tmp_path / "sa.ckpt", tiny_synth, name="sa_resnet",
                           options={"backbone": "resnet18"})  # fmt: skip
    index = build_index(ckpt, tiny_synth / "bounding_box_test", tmp_path / "g.index")
    store = GalleryStore(index)
    http = TestClient(create_app(store, attnreid.load(ckpt), allowed_hosts=HOSTS))
    assert http.get("/api/info").json()["attention"] is True
    image = Path(store.item(3).path)
    assert main(["viz", "attention", "--checkpoint", str(ckpt), "--image", str(image),
                 "-o", str(tmp_path / "cli.png")]) == 0  # fmt: skip
    expected = (tmp_path / "cli.png").read_bytes()
    for res in (_post(http, "/api/attention", image), _post(http, "/api/attention", crop_id=3)):
        assert res.status_code == 200 and res.headers["content-type"] == "image/png"
        assert res.content == expected
    plain_index = build_index(fake_checkpoint(tmp_path / "r.ckpt", tiny_synth),
                              tiny_synth / "bounding_box_test", tmp_path / "r.index")  # fmt: skip
    plain = TestClient(create_app(GalleryStore(plain_index), attnreid.load(tmp_path / "r.ckpt"),
                                 allowed_hosts=HOSTS))  # fmt: skip
    res = _post(plain, "/api/attention", crop_id=0)
    assert res.status_code == 400
    assert res.json() == {"error": "model 'resnet18' has no attention maps"}


def test_verdicts_from_thresholds():
    v = Verdicts({"0.01": 2.0, "0.001": 1.0, "0.0001": 0.5}, fmr=1e-3)
    assert [v(d) for d in (0.4, 1.0, 1.5, 2.0, 2.1)] == [
        "match",
        "match",
        "possible",
        "possible",
        "no match",
    ]
    assert not Verdicts() and Verdicts(max_distance=3.0)(3.0) == "match"
    with pytest.raises(AttnReidError, match=r"no calibrated threshold for FMR 0.05"):
        Verdicts({"0.01": 2.0}, fmr=0.05)


def test_feature_extractor_matches_files_in_every_input_form(served, tiny_synth):
    _, extractor = served
    files = sorted((tiny_synth / "query").iterdir())[:5]
    ref = extractor.extract(files).features.numpy()  # the files, through the test loader
    rgb = [np.array(Image.open(f).convert("RGB")) for f in files]
    for crops, channels in [
        (rgb, "RGB"),
        ([a[:, :, ::-1] for a in rgb], "BGR"),
        ([Image.open(f) for f in files], "RGB"),
        ([torch.from_numpy(a).permute(2, 0, 1) for a in rgb], "RGB"),
        ([torch.from_numpy(a).permute(2, 0, 1) / 255.0 for a in rgb], "RGB"),
    ]:
        np.testing.assert_allclose(extractor(crops, channels=channels), ref, atol=1e-5)
    same_size = [a for a in rgb if a.shape == rgb[0].shape]
    np.testing.assert_allclose(extractor(np.stack(same_size)), ref[: len(same_size)], atol=1e-5)


def test_readme_tracker_example_runs_as_written(served, tmp_path):
    """The README's in-memory example (detector crops -> features -> index add -> search),
    executed as written with its file names pointed at test files: the query crop, cut from
    the same frame as the second detection, finds that detection first, at distance 0."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "BGR" in b)
    index_file, _ = served
    index = tmp_path / "g.index"
    index.write_bytes(index_file.read_bytes())
    ckpt = str(index_file.parent / "m.ckpt")
    code = code.replace("runs/x/checkpoints/last.ckpt", ckpt).replace("gallery.index", str(index))
    frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    boxes = [(10, 20, 60, 140), (100, 30, 150, 160), (200, 50, 260, 200)]
    scope = {"frame": frame, "t": 1733230000.0, "detector_boxes": boxes}
    scope["query_crop"] = frame[30:160, 100:150]
    exec(compile(code, "README.md", "exec"), scope)
    hits = scope["hits"]
    assert hits[0].path == "cam2/1733230000_1.jpg" and hits[0].time == 1733230000.0
    assert hits[0].distance == pytest.approx(0.0, abs=1e-5)
    assert len(GalleryIndex.load(index)) == len(GalleryIndex.load(index_file)) + 3


# ------------------------------------------------------------------ the store behind the API


def _stored(store: GalleryStore) -> np.ndarray:
    return store.index.faiss.reconstruct_n(0, len(store))


def _distances(store: GalleryStore, q: np.ndarray) -> np.ndarray:
    """Distances of every stored vector to ``q``, as the index's metric defines them."""
    v = _stored(store)
    return 1 - v @ q if store.index.metric == "cosine" else ((v - q) ** 2).sum(1)


def test_filtered_pages_equal_a_brute_force_ranking(client):
    """Cameras, a time window and the query crop left out, page by page: the ids, ranks and
    distances of a numpy ranking of the filtered gallery, and ``total`` its size."""
    http, store, _ = client
    m, crop = store.index.meta, 7
    cams = sorted({int(c) for c in m.camids if c >= 0})[:2]
    lo, hi = np.nanpercentile(m.times, [10, 70])
    keep = np.isin(m.camids, cams) & (m.times >= lo) & (m.times <= hi)
    keep[crop] = False
    d = _distances(store, store.index.vector(crop))
    order = [int(i) for i in np.argsort(d, kind="stable") if keep[i]]
    assert 8 < len(order) < len(store) - 8  # several pages, and the filters leave some out
    form = {"crop_id": crop, "top": 4, "cameras": ",".join(str(c + 1) for c in cams),
            "time_from": lo, "time_to": hi}  # fmt: skip
    for offset in range(0, len(order) + 4, 4):
        res = _post(http, "/api/search", **form, offset=offset)
        got = res.json()
        assert (got["total"], got["offset"]) == (int(keep.sum()), offset)
        assert [r["id"] for r in got["results"]] == order[offset : offset + 4]
        assert [r["rank"] for r in got["results"]] == list(
            range(offset + 1, offset + 1 + len(got["results"]))
        )
        np.testing.assert_allclose([r["distance"] for r in got["results"]],
                                   d[order[offset : offset + 4]], atol=1e-4)  # fmt: skip
        assert "search;dur=" in res.headers["server-timing"]


def test_search_by_crop_uses_its_stored_vector(served, tmp_path, tiny_synth):
    """No forward for a gallery crop: the network may be broken, the search still answers."""
    index_file, _ = served
    extractor = attnreid.load(index_file.parent / "m.ckpt")
    copy = tmp_path / "g.index"
    copy.write_bytes(index_file.read_bytes())
    store = GalleryStore(copy)
    http = TestClient(create_app(store, extractor, allowed_hosts=HOSTS))

    def no_network(*args, **kwargs):
        raise RuntimeError("the network was run")

    extractor.forward = extractor.preprocess = no_network  # what the batcher and app call
    res = _post(http, "/api/search", crop_id=5, top=10)
    assert res.status_code == 200, res.text
    d = _distances(store, store.index.vector(5))
    expected = [int(i) for i in np.argsort(d, kind="stable") if i != 5][:10]
    assert [r["id"] for r in res.json()["results"]] == expected
    assert "forward" not in res.headers["server-timing"]
    with pytest.raises(RuntimeError, match="the network was run"):  # an upload does run it
        _post(http, "/api/search", sorted((tiny_synth / "query").iterdir())[0])


def test_batched_forwards_equal_one_at_a_time(served, tiny_synth):
    from attnreid.serve.batcher import Batcher

    _, extractor = served
    crops = [Image.open(f).convert("RGB") for f in sorted((tiny_synth / "query").iterdir())[:8]]
    single = np.stack([extractor([c])[0] for c in crops])
    batcher = Batcher(extractor, max_batch=8, wait_ms=50)
    x = extractor.preprocess(crops)
    start = threading.Barrier(8)

    def forward(i: int) -> np.ndarray:
        start.wait()
        return batcher(x[i])

    with ThreadPoolExecutor(8) as pool:
        batched = np.stack(list(pool.map(forward, range(8))))
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert 1 <= batcher.batches < 8  # they did share batches


def test_busy_server_answers_503(served, tmp_path, tiny_synth):
    index_file, _ = served
    extractor = attnreid.load(index_file.parent / "m.ckpt")
    copy = tmp_path / "g.index"
    copy.write_bytes(index_file.read_bytes())
    http = TestClient(create_app(GalleryStore(copy), extractor, allowed_hosts=HOSTS,
                                 max_pending=1))  # fmt: skip
    entered, release = threading.Event(), threading.Event()
    forward = extractor.forward

    def held(x, mask=None):
        entered.set()
        release.wait(30)
        return forward(x, mask)

    extractor.forward = held
    query = sorted((tiny_synth / "query").iterdir())[0]
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_post, http, "/api/search", query)
        try:
            assert entered.wait(30)
            res = _post(http, "/api/search", crop_id=0)
            assert (res.status_code, res.headers["retry-after"]) == (503, "1")
            assert res.json() == {"error": "busy: 1 requests in progress, try again"}
            assert http.get("/api/info").status_code == 200  # reads are not queued
        finally:
            release.set()
        assert first.result().status_code == 200
    assert _post(http, "/api/search", crop_id=0).status_code == 200


def test_info_shows_attention_only_when_the_model_draws_maps(served, tmp_path):
    index_file, _ = served
    extractor = attnreid.load(index_file.parent / "m.ckpt")
    store = GalleryStore(index_file)
    info = TestClient(create_app(store, extractor, allowed_hosts=HOSTS)).get("/api/info").json()
    assert info["attention"] is False
    extractor.model.attention_maps = lambda x, point=None: {}  # has the method, draws nothing
    http = TestClient(create_app(store, extractor, allowed_hosts=HOSTS))
    assert http.get("/api/info").json()["attention"] is False
    res = _post(http, "/api/attention", crop_id=0)
    assert res.json() == {"error": "model 'resnet18' has no attention maps"}


def test_added_crops_survive_a_restart_from_another_folder(served, tmp_path, tiny_synth,
                                                           monkeypatch):  # fmt: skip
    """The server started as ``serve --index g.index`` in the index's folder adds crops; started
    again from another folder (``--index ../a/g.index``), or with the folder moved, it finds
    them: their paths are stored relative to the index."""
    index_file, extractor = served
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "g.index").write_bytes(index_file.read_bytes())
    monkeypatch.chdir(tmp_path / "a")
    store = GalleryStore("g.index")
    http = TestClient(create_app(store, extractor, allowed_hosts=HOSTS))
    files = sorted((tiny_synth / "query").iterdir())[:3]
    ids = [_post(http, "/api/crops", f, name=f.name).json()["id"] for f in files]
    assert ids == list(range(len(store) - 3, len(store)))
    del http, store
    gc.collect()  # the first server is gone
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    for where in (Path("..") / "a" / "g.index", tmp_path / "moved" / "g.index"):
        if where.parent.name == "moved":
            gc.collect()
            shutil.move(tmp_path / "a", tmp_path / "moved")
        store = GalleryStore(where)
        assert (store.check_files(), store.removed_orphans) == ([], 0)
        http = TestClient(create_app(store, extractor, allowed_hosts=HOSTS))
        for i, f in zip(ids, files):
            assert http.get(f"/api/crops/{i}/image").content == f.read_bytes()
            top = _post(http, "/api/search", f, top=1).json()["results"][0]
            assert top["id"] == i and top["distance"] == pytest.approx(0, abs=1e-4)
        del http, store


def test_orphan_crop_images_are_removed_at_start(client, tiny_synth):
    """An image written but whose row never was (a crash between the two) is removed when the
    store opens; the images rows name are kept."""
    http, store, _ = client
    new = sorted((tiny_synth / "query").iterdir())[0]
    item = _post(http, "/api/crops", new, name=new.name).json()["id"]
    named = store.image_path(store.item(item))
    orphan = store.crops_dir / ("0" * 64 + ".jpg")
    orphan.write_bytes(new.read_bytes())
    again = GalleryStore(store.path)
    assert again.removed_orphans == 1 and not orphan.exists() and named.is_file()
    assert list(store.crops_dir.iterdir()) == [named]


def test_index_build_add_and_calibrate_beside_a_running_server(served, tmp_path, tiny_synth):
    """``index build --add`` and ``calibrate --index`` on the file a server has open: the next
    request sees their rows and header, and an upload after them loses neither."""
    from attnreid.cli.main import main

    index_file, extractor = served
    ckpt = index_file.parent / "m.ckpt"
    copy = tmp_path / "g.index"
    copy.write_bytes(index_file.read_bytes())
    store = GalleryStore(copy)
    http = TestClient(create_app(store, extractor, allowed_hosts=HOSTS))
    n = http.get("/api/info").json()["size"]
    extra = tmp_path / "extra"
    extra.mkdir()
    for f in sorted((tiny_synth / "query").iterdir())[:4]:
        shutil.copy(f, extra / f.name)
    assert main(["index", "build", "--checkpoint", str(ckpt), "--folder", str(extra), "-o",
                 str(copy), "--add"]) == 0  # fmt: skip
    assert http.get("/api/info").json()["size"] == n + 4
    found = _post(http, "/api/search", sorted(extra.iterdir())[1], top=1).json()["results"][0]
    assert found["id"] == n + 1 and found["distance"] == pytest.approx(0, abs=1e-4)
    cal = tmp_path / "cal.json"
    assert main(["calibrate", "--checkpoint", str(ckpt), "--fmr", "0.1", "--index", str(copy),
                 "-o", str(cal)]) == 0  # fmt: skip
    thresholds = json.loads(cal.read_text())["thresholds"]
    assert http.get("/api/crops?limit=1").status_code == 200
    assert store.index.info["calibration"]["thresholds"] == thresholds  # picked up
    new = sorted((tiny_synth / "bounding_box_train").iterdir())[0]
    assert _post(http, "/api/crops", new, name=new.name).json()["id"] == n + 4
    on_disk = GalleryIndex.load(copy)
    assert len(on_disk) == n + 5 and on_disk.info["calibration"]["thresholds"] == thresholds
    assert [Path(p).name for p in on_disk.paths[n : n + 4]] == sorted(os.listdir(extra))
    assert on_disk.resolve(on_disk.paths[n + 4]).read_bytes() == new.read_bytes()


def test_reads_during_concurrent_adds_never_fail(client, tiny_synth):
    """Threads list, describe, serve and search the gallery while others add crops: every
    answer is a 200 (an addition is seen whole or not at all). The first addition pauses once
    it has its path but not yet its camera, until a listing by camera has been answered (or
    1 s, when the listing waits for the addition): the moment a reader could see half an item."""
    http, store, _ = client
    extended, listed = threading.Event(), threading.Event()

    class PausedList(list):
        def extend(self, items):
            super().extend(items)
            if not extended.is_set():
                extended.set()
                listed.wait(1)

    store.index.meta.paths = PausedList(store.index.meta.paths)
    refresh = store.refresh

    def refresh_then_wait() -> None:  # the readers read while the first addition is paused
        refresh()
        extended.wait(10)

    store.refresh = refresh_then_wait
    files = sorted((tiny_synth / "bounding_box_train").iterdir())[:12]
    stop, answers = threading.Event(), []
    by_camera = "/api/crops?camera=1&limit=500"

    def read(url: str) -> None:
        while not stop.is_set():
            try:
                res = http.post(url, data={"crop_id": "0"}) if "search" in url else http.get(url)
                answers.append((url, res.status_code))
            except Exception as exc:  # a 500: the TestClient raises the server's exception
                answers.append((url, repr(exc)))
            if url == by_camera and extended.is_set():
                listed.set()

    urls = [by_camera, "/api/crops?limit=500", "/api/info", "/api/crops/0/image", "/api/search"]
    readers = [threading.Thread(target=read, args=(u,)) for u in urls]
    for t in readers:
        t.start()
    try:
        with ThreadPoolExecutor(3) as pool:
            added = list(pool.map(lambda f: _post(http, "/api/crops", f, name=f.name, camera=1),
                                  files))  # fmt: skip
    finally:
        stop.set()
        for t in readers:
            t.join(30)
    assert [r.status_code for r in added] == [200] * len(files)
    bad = [a for a in answers if a[1] != 200]
    assert not bad and {u for u, _ in answers} == set(urls), bad[:3]
    page = http.get(by_camera).json()
    assert {r.json()["id"] for r in added} <= {c["id"] for c in page["items"]}
