"""Load test of ``attnreid serve``: searches from concurrent clients on a 10,000-crop gallery.

    python benchmarks/bench_serve.py [--gallery 10000] [--searches 200] [--clients 8]

Builds a gallery index of ``--gallery`` items (features of the real crops in
``../shared/data/cuhk01`` repeated with noise, each item pointing at one of those crops;
without ``../shared``, synthetic crops), with an OSNet x0.25 re-ID model (the MSMT17
checkpoint from ``../shared/weights`` when present, else random weights: the cost is the
same), starts ``attnreid serve`` on 127.0.0.1 (a local address only), and sends
``--searches`` searches — each uploads a crop, which the server turns into a feature and ranks
the whole gallery with — from ``--clients`` concurrent clients. Prints p50 / p95 / max latency,
the throughput and the number of errors, measured here: an error is any non-200 answer, an
exception, or an answer whose 12 results are not the 12 nearest items that a direct search of
the same index with the same model gives for that crop (so a server that answered with wrong
features or a wrong ranking fails the run).
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

import attnreid
from attnreid.config import load_config
from attnreid.engine.build import build_model_from_config
from attnreid.retrieval import GalleryIndex

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WEIGHTS = SHARED / "weights" / "osnet_x0_25" / "osnet_x0_25_msmt17.pth"


def _checkpoint(folder: Path) -> Path:
    """An attnreid checkpoint of OSNet x0.25 (zoo weights when present), untrained here."""
    pretrained = str(WEIGHTS) if WEIGHTS.is_file() else "none"
    cfg = load_config("osnet_x0_25_cuhk01_cpu", [f"model.pretrained={pretrained}"])
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    model = build_model_from_config(cfg, 485)
    ckpt = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": {
            "attnreid": {
                "model": "osnet_x0_25",
                "num_classes": 485,
                "options": {},
                "feature_dim": model.feature_dim,
            },
            "config": cfg,
        },
        "epoch": 0,
    }
    torch.save(ckpt, folder / "osnet.ckpt")
    return folder / "osnet.ckpt"


def _crops(folder: Path, n: int = 64) -> list[Path]:
    real = sorted((SHARED / "data" / "cuhk01" / "campus").glob("*.png"))[:n]
    if real:
        return real
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = folder / f"crop{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (160, 64, 3), dtype=np.uint8)).save(path)
        out.append(path)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gallery", type=int, default=10_000)
    p.add_argument("--searches", type=int, default=200)
    p.add_argument("--clients", type=int, default=8)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ckpt = _checkpoint(folder)
        crops = _crops(folder)
        extractor = attnreid.load(ckpt, device="cpu")
        base = extractor([Image.open(c).convert("RGB") for c in crops])
        rng = np.random.default_rng(0)
        pick = rng.integers(0, len(crops), args.gallery)
        feats = base[pick] + 0.05 * rng.standard_normal((args.gallery, base.shape[1]))
        index = GalleryIndex.build(
            feats.astype(np.float32),
            [str(crops[i]) for i in pick],
            camids=rng.integers(0, 6, args.gallery),
            times=np.arange(args.gallery, dtype=np.float64),
            metric="euclidean",
            info=extractor.source,  # the model file, name, dimension and input size
        )
        index.save(folder / "g.index")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "attnreid.cli.main",
                "serve",
                "--index",
                str(folder / "g.index"),
                "--port",
                str(port),
            ],
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(1200):
                try:
                    httpx.get(f"{url}/api/info", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            payloads, expected = [], []
            for c in crops:
                buf = io.BytesIO()
                Image.open(c).convert("RGB").save(buf, format="JPEG", quality=95)
                payloads.append((c.stem + ".jpg", buf.getvalue()))
                sent = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")  # what it decodes
                expected.append([h.id for h in index.search(extractor([sent]), top_k=12)[0]])
            client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=args.clients))

            def one(i: int) -> tuple[float, bool]:
                name, data = payloads[i % len(payloads)]
                t0 = time.perf_counter()
                try:
                    res = client.post(
                        f"{url}/api/search", files={"image": (name, data)}, data={"top": "12"}
                    )
                    ids = [r["id"] for r in res.json()["results"]] if res.status_code == 200 else []
                    ok = ids == expected[i % len(payloads)]  # the direct search's 12, in order
                except httpx.HTTPError:
                    ok = False
                return time.perf_counter() - t0, ok

            one(0)  # warm-up (first forward pass), not counted
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                results = list(pool.map(one, range(args.searches)))
            wall = time.perf_counter() - t0
        finally:
            server.terminate()
            server.wait(10)
    lat = sorted(1000 * t for t, _ in results)
    errors = sum(not ok for _, ok in results)
    q = statistics.quantiles(lat, n=100)
    print(
        f"gallery {args.gallery:,} crops, {args.searches} searches (image uploads) from "
        f"{args.clients} concurrent clients: p50 {q[49]:.0f} ms, p95 {q[94]:.0f} ms, "
        f"max {lat[-1]:.0f} ms, {args.searches / wall:.1f} searches/s, {errors} errors"
    )
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
