"""Take the README's picture of ``attnreid serve`` (docs/serve.png) with real data.

    python docs/serve_screenshot.py --checkpoint runs/RUN/checkpoints/last.ckpt

The gallery is the checkpoint's test gallery (CUHK01 split 0: camera B of the 486 test
identities), with thresholds calibrated on the same test split (``attnreid calibrate``'s
function; for the picture only); the query is a camera-A image of one of those identities,
uploaded through the page in headless Chromium (Debian's ``/usr/bin/chromium``, driven by
Playwright), as the browser test does.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

import attnreid
from attnreid.engine.build import load_dataset
from attnreid.retrieval import GalleryIndex
from attnreid.retrieval.calibration import calibrate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--query", type=int, default=7, help="which query image to upload")
    parser.add_argument("--output", "-o", default=str(Path(__file__).parent / "serve.png"))
    args = parser.parse_args()
    extractor = attnreid.load(args.checkpoint)
    cfg = extractor.config
    ds = load_dataset(cfg)
    gallery = list(ds.gallery)
    feats = extractor.extract(gallery).features
    info = {**extractor.source, "calibration": calibrate(extractor, [1e-2, 1e-3])}
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "g.index"
        GalleryIndex.build(
            feats, [g.path for g in gallery], pids=[g.pid for g in gallery],
            camids=[g.camid for g in gallery], metric=cfg["eval"]["metric"], info=info,
        ).save(index)  # fmt: skip
        port = _free_port()
        cmd = [sys.executable, "-m", "attnreid.cli.main", "serve", "--index", str(index)]
        proc = subprocess.Popen([*cmd, "--port", str(port)])
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    httpx.get(f"{url}/api/info", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(url)
                page.wait_for_selector("#cameras input")
                page.set_input_files("#query-file", ds.query[args.query].path)
                page.wait_for_function(
                    "document.querySelector('#results-title').textContent.startsWith('Results')"
                )
                page.wait_for_load_state("networkidle")
                page.screenshot(path=args.output)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
