"""``attnreid serve`` as a real server: the page driven in headless Chromium, and a server
killed with SIGKILL that restarts with every acknowledged crop.

Chromium is Debian's (``/usr/bin/chromium``, installed by the Makefile when absent), driven by
Playwright's Python client pointed at that executable (Playwright's own browser download is
never used)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from attnreid.cli.main import main
from attnreid.retrieval import GalleryIndex
from tests.retrieval.helpers import fake_checkpoint

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(index: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "attnreid.cli.main",
            "serve",
            "--index",
            str(index),
            "--port",
            str(port),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(f"{url}/api/info", timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stdout.read()}") from None
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start within 60 s")


@pytest.fixture
def gallery(tiny_synth: Path, tmp_path: Path) -> Path:
    ckpt = fake_checkpoint(tmp_path / "m.ckpt", tiny_synth)
    out = tmp_path / "g.index"
    folder = tiny_synth / "bounding_box_test"
    assert (
        main(["index", "build", "--checkpoint", str(ckpt), "--folder", str(folder), "-o", str(out)])
        == 0
    )
    return out


@pytest.fixture
def server(gallery: Path) -> Iterator[str]:
    proc, url = _start(gallery, "--max-distance", "1e-3")
    yield url
    proc.terminate()
    proc.wait(10)


def test_killed_server_restarts_with_every_acknowledged_crop(gallery, tiny_synth):
    proc, url = _start(gallery)
    n = len(GalleryIndex.load(gallery))
    files = sorted((tiny_synth / "query").iterdir())[:5]
    ids = []
    for f in files:
        res = httpx.post(f"{url}/api/crops", files={"image": (f.name, f.read_bytes())}, timeout=60)
        ids.append(res.json()["id"])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert ids == list(range(n, n + 5))
    proc, url = _start(gallery)
    try:
        info = httpx.get(f"{url}/api/info").json()
        assert info["size"] == n + 5
        for item_id, f in zip(ids, files):
            assert httpx.get(f"{url}/api/crops/{item_id}/image").content == f.read_bytes()
    finally:
        proc.terminate()
        proc.wait(10)


def test_page_in_chromium(server, tiny_synth):
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed (make installs it)")
    gallery_files = sorted((tiny_synth / "bounding_box_test").iterdir())
    query = gallery_files[4]  # a gallery image: it finds itself first, at distance 0
    new = sorted((tiny_synth / "query").iterdir())[-1]
    api = httpx.Client(base_url=server, timeout=60)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server)
        page.wait_for_selector("#cameras input")
        # the gallery's first page arrives by its own request: wait for it (a loaded machine
        # once showed the camera boxes before the cards)
        page.wait_for_function("document.querySelectorAll('.card').length > 0")
        assert page.locator(".card").count() == 12

        # upload a query: the expected top-1 crop, marked as a match (max distance 1e-3)
        page.set_input_files("#query-file", str(query))
        page.wait_for_function(
            "document.querySelector('#results-title').textContent.startsWith('Results')"
        )
        first = page.locator(".card").first
        top = api.post(
            "/api/search", files={"image": (query.name, query.read_bytes())}, data={"top": "12"}
        ).json()["results"]
        assert first.get_attribute("data-id") == str(top[0]["id"])
        assert Path(top[0]["name"]).name == query.name and "match" in first.inner_text()

        # click a result: it becomes the query, and the page shows what the API ranks for it
        clicked = page.locator(".card").nth(2)
        clicked_id = int(clicked.get_attribute("data-id"))
        clicked.click()
        page.wait_for_function(
            f"document.querySelector('#query-name').textContent.includes('crop {clicked_id} ')"
        )
        expected = api.post("/api/search", data={"crop_id": str(clicked_id), "top": "12"})
        want = [str(r["id"]) for r in expected.json()["results"]]
        page.wait_for_function(f"document.querySelector('.card').dataset.id === '{want[0]}'")
        assert [c.get_attribute("data-id") for c in page.locator(".card").all()] == want

        # filter by camera: keep only camera 2
        for box in page.locator("#cameras input").all():
            if box.get_attribute("value") != "2":
                box.uncheck()
        page.click("#apply")
        page.wait_for_function(
            "[...document.querySelectorAll('.card')].every(c => c.innerText.includes('cam 2'))"
        )
        cams = api.post("/api/search", data={"crop_id": str(clicked_id), "cameras": "2"}).json()
        assert page.locator(".card").count() == min(12, cams["total"])

        # add a crop from the page, then find it
        page.set_input_files("#add-file", str(new))
        page.fill("#add-camera", "2")
        page.click("#add-form button")
        page.wait_for_function(
            "document.querySelector('#add-status').textContent.startsWith('added')"
        )
        added = int(page.inner_text("#add-status").split()[-1])
        page.set_input_files("#query-file", str(new))
        page.wait_for_function(
            f"document.querySelector('#query-name').textContent === '{new.name}'"
        )
        page.wait_for_function(f"document.querySelector('.card').dataset.id === '{added}'")
        assert "0.000" in page.locator(".card").first.inner_text()
        browser.close()
