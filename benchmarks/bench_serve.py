"""Load test of ``attnreid serve``: searches from concurrent clients, where the time goes.

    python benchmarks/bench_serve.py [--gallery 10000] [--searches 200] [--clients 1 8]
        [--max-batch 8] [--batch-wait-ms 2] [--threads 1] [--kind flat] [--index existing.index]

Builds a gallery index of ``--gallery`` items (features of the real crops in
``../shared/data/cuhk01`` repeated with noise, each item pointing at one of those crops, camera
and time drawn at random; without ``../shared``, synthetic crops), with an OSNet x0.25 re-ID
model (the MSMT17 checkpoint from ``../shared/weights`` when present, else random weights: the
cost is the same), or takes ``--index``; starts ``attnreid serve`` on 127.0.0.1 with the
batching settings, and for each number of ``--clients`` sends ``--searches`` searches — each
uploads a crop — from that many concurrent clients, measured here:

* p50 / p95 / max latency, searches per second, and the number of errors: a non-200 answer,
  an exception, or an answer whose 12 results are not the 12 nearest items that a direct
  search of the same index with the same model gives for that crop, in order, or at the same
  distances (within a relative 1e-4: float32 squared distances of batched forwards) where
  tied items swap (so a server that answered with wrong features or a wrong ranking fails
  the run); the first few errors are printed;
* the breakdown of a search (medians of the ``Server-Timing`` parts the server reports:
  parse, decode, preprocess, forward, search, respond) and the rest (HTTP, the client);
* ``GET /api/info`` latency (p50 / p95) polled while the clients search.
"""

from __future__ import annotations

import argparse
import io
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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
PARTS = ("parse", "decode", "preprocess", "forward", "search", "respond")


def osnet_checkpoint(folder: Path) -> Path:
    """An attnreid checkpoint of OSNet x0.25 (zoo weights when present), untrained here."""
    pretrained = str(WEIGHTS) if WEIGHTS.is_file() else "none"
    cfg = load_config("osnet_x0_25_cuhk01_cpu", [f"model.pretrained={pretrained}"])
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    model = build_model_from_config(cfg, 485)
    meta = {"model": "osnet_x0_25", "num_classes": 485, "options": {},
            "feature_dim": model.feature_dim}  # fmt: skip
    ckpt = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": {"attnreid": meta, "config": cfg},
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


def build_gallery(folder: Path, size: int, kind: str = "flat") -> tuple[Path, Path, list[Path]]:
    """``(index file, checkpoint, crops)``: ``size`` items around the features of real crops."""
    ckpt = osnet_checkpoint(folder)
    crops = _crops(folder)
    extractor = attnreid.load(ckpt, device="cpu")
    base = extractor([Image.open(c).convert("RGB") for c in crops])
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(crops), size)
    feats = base[pick] + 0.05 * rng.standard_normal((size, base.shape[1]))
    index = GalleryIndex.build(
        feats.astype(np.float32),
        [str(crops[i]) for i in pick],
        camids=rng.integers(0, 6, size),
        times=np.arange(size, dtype=np.float64),
        metric="euclidean",
        kind=kind,
        info=extractor.source,  # the model file, name, dimension and input size
    )
    index.save(folder / "g.index")
    return folder / "g.index", ckpt, crops


def _quantiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=100) if len(values) > 1 else [values[0]] * 99
    return q[49], q[94]


def _check(res: httpx.Response, expected: list[tuple[int, float]]) -> str:
    """``""`` when the answer is the direct search's 12 nearest, else what is wrong. Items are
    compared by id, and where the order differs, by distance: a batched forward pass may move
    a feature by ~1e-6, which can swap two items at the same distance, not a wrong answer."""
    if res.status_code != 200:
        return f"HTTP {res.status_code}: {res.text[:200]}"
    got = [(r["id"], r["distance"]) for r in res.json()["results"]]
    if [g for g, _ in got] == [e for e, _ in expected]:
        return ""
    pairs = zip(got, expected, strict=False)
    far = max((abs(g - e) / max(1.0, abs(e)) for (_, g), (_, e) in pairs), default=1.0)
    if len(got) == len(expected) and far <= 1e-4:
        return ""  # the same distances rank by rank (relative 1e-4): tied items in another order
    return f"results {got} differ from the direct search's {expected}"


def run(url: str, payloads: list, expected: list, searches: int, clients: int) -> dict:
    """``searches`` searches from ``clients`` threads, with ``/api/info`` polled beside them."""
    # TCP_NODELAY, as browsers and curl set it: without it the request's body waits for the
    # server's delayed ACK of its headers (Nagle), about 40 ms a request on Linux
    nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                                  limits=httpx.Limits(max_connections=clients + 1))  # fmt: skip
    client = httpx.Client(timeout=120, transport=nodelay)

    def one(i: int) -> tuple[float, str, dict[str, float]]:
        name, data = payloads[i % len(payloads)]
        t0 = time.perf_counter()
        try:
            res = client.post(f"{url}/api/search", files={"image": (name, data)},
                              data={"top": "12"})  # fmt: skip
            timing = dict(re.findall(r"(\w+);dur=([\d.]+)", res.headers.get("server-timing", "")))
            error = _check(res, expected[i % len(payloads)])
        except httpx.HTTPError as e:
            error, timing = f"{type(e).__name__}: {e}", {}
        return time.perf_counter() - t0, error, {k: float(v) for k, v in timing.items()}

    one(0)  # warm-up (first forward pass), not counted
    info_ms: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            client.get(f"{url}/api/info")
            info_ms.append(1000 * (time.perf_counter() - t0))
            time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(searches)))
    wall = time.perf_counter() - t0
    stop.set()
    poller.join()
    lat = [1000 * t for t, _, _ in results]
    parts = {p: statistics.median([t[p] for _, _, t in results if p in t] or [0.0]) for p in PARTS}
    return {
        "latency": _quantiles(lat),
        "max": max(lat),
        "rate": searches / wall,
        "errors": [e for _, e, _ in results if e],
        "parts": parts,
        "total": statistics.median(lat),
        "info": _quantiles(info_ms) if info_ms else (float("nan"),) * 2,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gallery", type=int, default=10_000)
    p.add_argument("--searches", type=int, default=200)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--batch-wait-ms", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=1, help="the server's --threads")
    p.add_argument("--kind", default="flat", choices=("flat", "ivf", "hnsw"))
    p.add_argument("--index", help="an existing index (with --checkpoint) instead of building one")
    p.add_argument("--checkpoint", help="the model of --index")
    args = p.parse_args()
    errors = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.index:
            index_file, ckpt, crops = Path(args.index), Path(args.checkpoint), _crops(folder)
        else:
            index_file, ckpt, crops = build_gallery(folder, args.gallery, args.kind)
        index, extractor = GalleryIndex.load(index_file), attnreid.load(ckpt, device="cpu")
        payloads, expected = [], []
        for c in crops:
            buf = io.BytesIO()
            Image.open(c).convert("RGB").save(buf, format="JPEG", quality=95)
            payloads.append((c.stem + ".jpg", buf.getvalue()))
            sent = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")  # what it decodes
            hits = index.search(extractor([sent]), top_k=12)[0]
            expected.append([(h.id, h.distance) for h in hits])
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "attnreid.cli.main", "serve", "--index", str(index_file),
               "--checkpoint", str(ckpt), "--port", str(port), "--max-batch",
               str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms),
               "--threads", str(args.threads)]  # fmt: skip
        server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        try:
            for _ in range(6000):
                try:
                    httpx.get(f"{url}/api/info", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            print(f"gallery {len(index):,} crops ({index.kind}), batching: at most "
                  f"{args.max_batch}, {args.batch_wait_ms:g} ms wait; {args.threads} thread(s) "
                  "for the network")  # fmt: skip
            for clients in args.clients:
                r = run(url, payloads, expected, args.searches, clients)
                errors += len(r["errors"])
                (p50, p95), (i50, i95) = r["latency"], r["info"]
                print(
                    f"{args.searches} searches (image uploads) from {clients} concurrent "
                    f"clients: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {r['max']:.0f} ms, "
                    f"{r['rate']:.1f} searches/s; GET /api/info meanwhile p50 {i50:.0f} ms, "
                    f"p95 {i95:.0f} ms; {len(r['errors'])} errors"
                )
                for error in sorted(set(r["errors"]))[:5]:
                    print(f"  error: {error}")
                parts = ", ".join(f"{k} {v:.1f}" for k, v in r["parts"].items())
                rest = r["total"] - sum(r["parts"].values())
                print(f"  one search, medians (ms): {parts}; HTTP and client {rest:.1f}",
                      flush=True)  # fmt: skip
        finally:
            server.terminate()
            server.wait(10)
    print(f"{errors} errors")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
