"""Who may write to the search service, how much anyone may send, what a damaged index does at
start-up: each defect reproduced with the request that triggered it, and the answer it must get.

The app runs in-process (Starlette's TestClient, which sends ``Host: testserver``: the tests
that are not about the Host allow that name)."""

from __future__ import annotations

import gc
import io
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import anyio
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import attnreid
from attnreid.cli.main import main
from attnreid.errors import AttnReidError
from attnreid.retrieval import GalleryIndex
from attnreid.serve import GalleryStore, create_app
from tests.reliability.helpers import cli_error
from tests.retrieval.helpers import build_index, fake_checkpoint

HOSTS = ("testserver",)
TOKEN = "0123456789abcdef-token"
LIMIT = 200_000  # max_upload of these apps: the body limit is LIMIT + 64 KiB


@pytest.fixture(scope="module")
def served(tiny_synth: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("secure")
    ckpt = fake_checkpoint(tmp / "m.ckpt", tiny_synth)
    index = build_index(ckpt, tiny_synth / "bounding_box_test", tmp / "g.index")
    gc.collect()  # the index's connection closed: the file holds everything
    return index, attnreid.load(ckpt)


@pytest.fixture
def make(served, tmp_path):
    """``make(**create_app options)`` -> (TestClient, store) over a copy of the index."""
    index_file, extractor = served
    copy = tmp_path / "g.index"
    copy.write_bytes(index_file.read_bytes())

    def build(**options):
        store = GalleryStore(copy)
        options = {"allowed_hosts": HOSTS, "max_upload": LIMIT, **options}
        return TestClient(create_app(store, extractor, **options)), store

    return build


def _crop(tiny_synth: Path, i: int = 0) -> Path:
    return sorted((tiny_synth / "query").iterdir())[i]


def _add(http: TestClient, image: Path, name: str | None = None, headers=None, **form):
    files = {"image": (name or image.name, image.read_bytes(), "application/octet-stream")}
    data = {k: str(v) for k, v in form.items()}
    return http.post("/api/crops", files=files, data=data, headers=headers or {})


def _on_disk(store: GalleryStore) -> tuple[int, list[str]]:
    """The rows in the file and the images in the crops folder."""
    crops = sorted(p.name for p in store.crops_dir.iterdir()) if store.crops_dir.is_dir() else []
    return len(GalleryIndex.load(store.path)), crops


def _refused(res, status: int, error: str) -> None:
    assert (res.status_code, res.json()) == (status, {"error": error}), res.text


# ------------------------------------------------------------------ writes: origin, token, mode


def test_write_from_another_origin_is_refused(make, tiny_synth):
    http, store = make()
    before = _on_disk(store)
    crop = _crop(tiny_synth)
    res = _add(http, crop, headers={"Origin": "http://evil.example"})
    _refused(res, 403, "a write from another origin (http://evil.example) is refused")
    res = _add(http, crop, headers={"Origin": "null"})  # a sandboxed page, a file:// page
    _refused(res, 403, "a write from an opaque origin is refused")
    assert _on_disk(store) == before and len(store) == before[0]
    # a search from another page is no write: answered
    res = http.post("/api/search", data={"crop_id": "1"}, headers={"Origin": "http://evil.example"})
    assert res.status_code == 200
    # the server's own page (same origin), and an origin it was told to trust, may write
    assert _add(http, crop, headers={"Origin": "http://testserver"}).status_code == 200
    http, _ = make(cors_origins=("http://app.example",))
    res = _add(http, _crop(tiny_synth, 1), headers={"Origin": "http://app.example"})
    assert res.status_code == 200
    assert res.headers["access-control-allow-origin"] == "http://app.example"
    assert _on_disk(store)[0] == before[0] + 2


def test_unknown_host_is_refused_on_loopback(served):
    """DNS rebinding: a page on attacker.example whose name resolves to 127.0.0.1 reaches a
    loopback server with ``Host: attacker.example``."""
    index_file, extractor = served
    app = create_app(GalleryStore(index_file), extractor)  # bound to 127.0.0.1, no extra names
    http = TestClient(app, base_url="http://127.0.0.1:8080")
    assert http.get("/api/info").status_code == 200
    for host in ("localhost:8080", "[::1]:8080", "127.0.0.1"):
        assert http.get("/api/info", headers={"Host": host}).status_code == 200, host
    for method, url in (("GET", "/api/info"), ("GET", "/"), ("POST", "/api/search")):
        res = http.request(method, url, headers={"Host": "attacker.example"})
        _refused(res, 400, "unknown Host: this server answers its own names")
    res = http.get("/api/info", headers={"Host": "attacker.example:8080"})
    _refused(res, 400, "unknown Host: this server answers its own names")
    # bound to every address, a server answers any name (its writes need the token)
    wide = TestClient(create_app(GalleryStore(index_file), extractor, bind_host="0.0.0.0",
                                 token=TOKEN))  # fmt: skip
    assert wide.get("/api/info", headers={"Host": "reid.example"}).status_code == 200


def test_writes_need_the_token(make, tiny_synth):
    http, store = make(token=TOKEN)
    n = len(store)
    crop = _crop(tiny_synth)
    need = "adding crops needs the server's token (Authorization: Bearer <token>)"
    _refused(_add(http, crop), 403, need)
    wrong = {"Authorization": "Bearer wrong-token-0123456789"}
    _refused(_add(http, crop, headers=wrong), 403, need)
    _refused(_add(http, crop, headers={"Authorization": TOKEN}), 403, need)  # no "Bearer "
    assert _on_disk(store) == (n, [])
    res = _add(http, crop, headers={"Authorization": f"Bearer {TOKEN}"})
    assert res.status_code == 200 and res.json()["id"] == n
    assert _on_disk(store)[0] == n + 1
    # reads need no token; the page learns that writes do
    assert http.post("/api/search", data={"crop_id": "0"}).status_code == 200
    info = http.get("/api/info").json()
    assert (info["token"], info["writable"]) == (True, True)


def test_read_only_server_refuses_writes_and_searches(make, tiny_synth):
    http, store = make(read_only=True, token=TOKEN)
    n = len(store)
    crop = _crop(tiny_synth)
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
        res = _add(http, crop, headers=headers)
        _refused(res, 403, "this server is read-only: it does not add crops")
    assert _on_disk(store) == (n, [])
    files = {"image": (crop.name, crop.read_bytes())}
    res = http.post("/api/search", files=files, data={"top": "3"})
    assert res.status_code == 200 and len(res.json()["results"]) == 3
    assert http.get("/api/info").json()["writable"] is False


def test_serve_on_the_network_needs_a_token_or_read_only(capsys, monkeypatch, tmp_path):
    """It refuses before loading anything: the index named here does not even exist."""
    monkeypatch.delenv("ATTNREID_TOKEN", raising=False)
    missing = tmp_path / "none.index"
    argv = ["serve", "--index", str(missing), "--host", "0.0.0.0", "--port", "0"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: --host 0.0.0.0 opens the search service to the network: set a token for writes "
        "(--token or ATTNREID_TOKEN) or serve it --read-only\n"
    )
    assert cli_error(capsys, *argv, "--token", "short") == (
        "--token must be at least 16 characters (e.g. openssl rand -hex 16)"
    )
    # with a token (option or environment) or --read-only it goes on: to the missing index
    gone = f"gallery index {missing} does not exist"
    assert cli_error(capsys, *argv, "--read-only") == gone
    assert cli_error(capsys, *argv, "--token", TOKEN) == gone
    monkeypatch.setenv("ATTNREID_TOKEN", TOKEN)
    assert cli_error(capsys, *argv) == gone


# ------------------------------------------------------------------ numbers, sizes, formats

BIG = "99999999999999999999"  # past int64


@pytest.mark.parametrize(
    ("name", "form", "error"),
    [
        ("q.jpg", {"pid": BIG}, "pid: Input should be less than or equal to 4611686018427387904"),
        ("q.jpg", {"pid": "-1"}, "pid: Input should be greater than or equal to 0"),
        ("q.jpg", {"camera": BIG}, "camera: Input should be less than or equal to 1000000"),
        ("q.jpg", {"camera": "0"}, "camera: Input should be greater than or equal to 1"),
        ("q.jpg", {"time": "1e300"}, f"time: Input should be less than or equal to {10**18}"),
        ("q.jpg", {"time": "nan"}, "time: Input should be a finite number"),
        (f"{BIG}_c1s1_000001_01.jpg", {},
         f"{BIG}_c1s1_000001_01.jpg: the identity or camera in its name is out of range"),
        (f"0001_c{BIG}s1_000001_01.jpg", {},
         f"0001_c{BIG}s1_000001_01.jpg: the identity or camera in its name is out of range"),
        (f"0001_c1s1_{BIG}_01.jpg", {},
         f"0001_c1s1_{BIG}_01.jpg: the time in its name is out of range"),
    ],
)  # fmt: skip
def test_numbers_out_of_range_add_nothing(make, tiny_synth, name, form, error):
    http, store = make()
    before = _on_disk(store)
    res = _add(http, _crop(tiny_synth), name=name, **form)
    _refused(res, 400, error)
    assert _on_disk(store) == before == (len(store), [])  # no row, no image left behind


def _multipart(total: int, chunk: int = 2**20):
    """A multipart form whose image is ``total`` bytes, as a generator (sent chunked: no
    Content-Length); ``sent[0]`` counts the bytes handed out."""
    sent = [0]

    def body():
        parts = [b'--b\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
                 b"Content-Type: image/jpeg\r\n\r\n"]  # fmt: skip
        parts += (b"\xff" * chunk for _ in range(total // chunk))
        for part in (*parts, b"\r\n--b--\r\n"):
            sent[0] += len(part)
            yield part

    return body, sent


def test_chunked_body_over_the_limit_is_413(make, tiny_synth):
    http, store = make()
    assert _add(http, _crop(tiny_synth)).status_code == 200  # the crops folder exists
    before = _on_disk(store)
    body, _ = _multipart(60 * 2**20)
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    for url in ("/api/crops", "/api/search"):
        res = http.post(url, content=body(), headers=headers)
        assert "content-length" not in res.request.headers
        assert res.request.headers["transfer-encoding"] == "chunked"
        _refused(res, 413, f"request body over the limit of {LIMIT + 65536:,} bytes")
    assert _on_disk(store) == before


def test_body_is_not_read_past_the_limit(make):
    """At the ASGI level, a body arriving in 1 MiB messages: the app stops receiving at the
    first message past the limit and answers 413 (the rest is never read)."""
    http, _ = make()
    app = http.app
    body, sent = _multipart(60 * 2**20)
    chunks = body()
    answer: list[dict] = []

    async def receive() -> dict:
        part = next(chunks, None)
        return {"type": "http.request", "body": part or b"", "more_body": part is not None}

    async def send(message: dict) -> None:
        answer.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/crops", "raw_path": b"/api/crops", "query_string": b"",
        "root_path": "", "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 5000),
        "headers": [(b"host", b"127.0.0.1:8080"), (b"transfer-encoding", b"chunked"),
                    (b"content-type", b"multipart/form-data; boundary=b")],
    }  # fmt: skip
    anyio.run(app, scope, receive, send)
    assert answer[0]["status"] == 413 and len(answer) == 2
    assert json.loads(answer[1]["body"])["error"].startswith("request body over the limit")
    assert sent[0] <= LIMIT + 65536 + 2 * 2**20  # stopped within a chunk of the limit


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"top": "500"}, "top: Input should be less than or equal to 200"),
        ({"offset": "20000"}, "offset: Input should be less than or equal to 10000"),
        ({"offset": "-1"}, "offset: Input should be greater than or equal to 0"),
        ({"crop_id": BIG}, "crop_id: Input should be less than or equal to 4611686018427387904"),
        ({"time_from": "inf"}, "time_from: Input should be a finite number"),
        ({"cameras": "1,0"}, "cameras must be up to 64 numbers between 1 and 1,000,000"),
        ({"cameras": ",".join(["1"] * 65)},
         "cameras must be up to 64 numbers between 1 and 1,000,000"),
    ],
)  # fmt: skip
def test_search_limits(make, form, error):
    http, _ = make()
    _refused(http.post("/api/search", data={"crop_id": "0", **form}), 400, error)


def test_only_accepted_image_formats_are_opened(make, tiny_synth):
    http, store = make()
    before = _on_disk(store)
    buf = io.BytesIO()
    Image.open(_crop(tiny_synth)).convert("RGB").save(buf, format="GIF")
    gif = buf.getvalue()
    assert Image.open(io.BytesIO(gif)).format == "GIF"  # PIL would open it
    expected = "not an image of an accepted format (JPEG, PNG, BMP, WEBP, TIFF): q.jpg"
    for url in ("/api/search", "/api/crops"):
        res = http.post(url, files={"image": ("q.jpg", gif, "image/jpeg")})
        _refused(res, 400, expected)
    assert _on_disk(store) == before
    for fmt in ("PNG", "BMP", "WEBP", "TIFF"):  # the accepted ones are
        buf = io.BytesIO()
        Image.open(_crop(tiny_synth)).convert("RGB").save(buf, format=fmt)
        res = http.post("/api/crops", files={"image": (f"x.{fmt.lower()}", buf.getvalue())})
        assert res.status_code == 200, (fmt, res.text)


def test_a_row_that_is_not_written_leaves_no_image(make, tiny_synth, monkeypatch):
    from attnreid.retrieval.index_file import IndexFileError

    http, store = make()
    before = _on_disk(store)

    def busy(*args, **kwargs):
        raise IndexFileError(f"gallery index {store.path} is busy (database is locked): try again")

    monkeypatch.setattr(store.index.file, "append", busy)
    res = _add(http, _crop(tiny_synth))
    _refused(res, 400, f"gallery index {store.path} is busy (database is locked): try again")
    assert _on_disk(store) == before and len(store) == before[0]


# ------------------------------------------------------------------ a damaged index at start-up


def _sql(path: Path, query: str, *args) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute(query, args)
        db.commit()


def _damage(path: Path, kind: str) -> str:
    """Damage the index file at ``path``; the fault its message must name."""
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return "database disk image is malformed"
    if kind == "missing header key":
        _sql(path, "DELETE FROM header WHERE key = 'metric'")
        return "header key 'metric' is missing or not a str"
    if kind == "unknown param":
        with closing(sqlite3.connect(path)) as db:
            params = json.loads(db.execute("SELECT value FROM header WHERE key = 'params'")
                                .fetchone()[0])  # fmt: skip
        _sql(path, "UPDATE header SET value = ? WHERE key = 'params'",
             json.dumps({**params, "nprobes": 8}))  # fmt: skip
        return "unknown index parameters ['nprobes']"
    assert kind == "short feature"
    _sql(path, "UPDATE items SET feature = substr(feature, 1, 8) WHERE id = 3")
    return "item 3's feature is not 512 float32 values"


@pytest.mark.parametrize("kind", ["truncated", "missing header key", "unknown param",
                                  "short feature"])  # fmt: skip
def test_damaged_index_at_start_up_is_one_line(served, tmp_path, capsys, kind):
    index_file, _ = served
    path = tmp_path / "g.index"
    path.write_bytes(index_file.read_bytes())
    fault = _damage(path, kind)
    expected = f"gallery index {path} is damaged: {fault}"
    with pytest.raises(AttnReidError) as exc:
        GalleryStore(path)
    assert str(exc.value) == expected
    assert cli_error(capsys, "serve", "--index", str(path), "--port", "0") == expected
