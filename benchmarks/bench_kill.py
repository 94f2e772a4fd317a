"""Kill test of ``attnreid serve``: SIGKILL while 8 clients add crops, restart, nothing lost.

    python benchmarks/bench_kill.py [--runs 20] [--clients 8] [--max-delay 2.0] [--seed 0]

Each run starts ``attnreid serve`` on a fresh gallery index (a small one, of an untrained
ResNet-18 at 64x32: the model does not matter here), from the index's folder with a relative
``--index``. ``--clients`` threads POST distinct crops (PNG, each one pixel apart, so every
upload has its own bytes and SHA-256) to ``/api/crops`` as fast as they can and record every
acknowledged (200) answer's ``id`` with the bytes sent. At a random moment (uniform in
``0 .. --max-delay`` seconds after the first acknowledgement) the server is killed with
SIGKILL, then restarted from another working directory with an absolute ``--index``, and the
run checks:

* every acknowledged crop is there: ``GET /api/crops/{id}`` answers 200 and
  ``GET /api/crops/{id}/image`` exactly the bytes sent (else it is *lost*);
* the file opens with :meth:`GalleryIndex.load <attnreid.retrieval.GalleryIndex.load>`
  (which validates all of it), and holds at least the acknowledged rows (a row committed whose
  answer the kill cut off is fine: *unacknowledged*);
* no *orphan*: every file in ``<index>.crops/`` is named by a row (after the restart's own
  sweep of the images an interrupted addition left), no ``*.tmp`` file remains, and every row
  of the crops folder has its image.

Prints one line per run and a summary; the exit status is 1 if any run lost a crop or left an
orphan (``tests/serve/test_kill.py`` runs it once in CI).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

import attnreid
from attnreid.config import load_config
from attnreid.models import build_model
from attnreid.retrieval import GalleryIndex

HEIGHT, WIDTH = 64, 32
PORT_LINE = re.compile(r"on http://127\.0\.0\.1:(\d+)")


@dataclass
class Gallery:
    """What every run starts from: a model file, a few crops and their features."""

    checkpoint: Path
    crops: list[Path]
    features: np.ndarray
    source: dict
    bases: list[np.ndarray]  # HxWx3 uint8 images the uploads are made from


@dataclass
class RunResult:
    delay: float  # seconds from the first acknowledgement to the kill
    acknowledged: int
    rows: int  # rows added to the index, found after the restart
    lost: int  # acknowledged crops missing, or whose image is not the bytes sent
    orphans: int  # files in the crops folder no row names, after the restart
    tmp_files: int  # *.tmp files left beside the index or in its crops folder
    missing_images: int  # rows of the crops folder without their image
    swept: int  # images the restart removed (an addition cut off before its row)
    refused: dict[int, int] = field(default_factory=dict)  # non-200 answers by status
    problems: list[str] = field(default_factory=list)

    @property
    def unacknowledged(self) -> int:
        return self.rows - self.acknowledged

    @property
    def ok(self) -> bool:
        return not (self.lost or self.orphans or self.tmp_files or self.missing_images
                    or self.problems or self.rows < self.acknowledged)  # fmt: skip

    def line(self) -> str:
        refused = f", refused {self.refused}" if self.refused else ""
        return (
            f"killed {self.delay:.2f} s after the first ack: acknowledged {self.acknowledged}, "
            f"rows found {self.rows} ({self.unacknowledged} unacknowledged), lost {self.lost}, "
            f"orphans {self.orphans}, tmp {self.tmp_files}, rows without image "
            f"{self.missing_images}, swept at restart {self.swept}{refused}"
            + "".join(f"\n    {p}" for p in self.problems[:5])
        )


def prepare(folder: Path, n_crops: int = 8) -> Gallery:
    """A model file (an untrained ResNet-18) and ``n_crops`` random crops in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model("resnet18", 6, "none")
    overrides = ["model.name=resnet18", "model.pretrained=none", "~model.options",
                 f"data.height={HEIGHT}", f"data.width={WIDTH}", "data.workers=0"]  # fmt: skip
    cfg = {k: v for k, v in load_config("demo", overrides).items() if not k.startswith("_")}
    ckpt = folder / "model.ckpt"
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {
                "attnreid": {
                    "model": "resnet18",
                    "num_classes": 6,
                    "options": {},
                    "feature_dim": model.feature_dim,
                },
                "config": cfg,
            },
            "epoch": 0,
        },
        ckpt,
    )
    rng = np.random.default_rng(0)
    bases = [rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(n_crops)]
    crops = []
    for i, b in enumerate(bases):
        crops.append(folder / f"{i:04d}_c{i % 3 + 1}s1_{i:06d}_01.png")
        Image.fromarray(b).save(crops[-1])
    extractor = attnreid.load(ckpt, device="cpu")
    feats = extractor([Image.open(c).convert("RGB") for c in crops])
    return Gallery(ckpt, crops, np.asarray(feats, np.float32), dict(extractor.source), bases)


def payload(gallery: Gallery, k: int) -> bytes:
    """Upload ``k`` (< 2**24): a base crop with one pixel set to ``k``, as PNG (lossless, so
    every k has its own bytes)."""
    image = gallery.bases[k % len(gallery.bases)].copy()
    image[0, 0] = (k & 255, (k >> 8) & 255, (k >> 16) & 255)  # PNG: lossless
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _start(
    index: str, cwd: Path, log: Path, timeout: float = 120.0
) -> tuple[subprocess.Popen, str]:
    """``attnreid serve --index INDEX --port 0`` run in ``cwd``; waits until it answers."""
    argv = [sys.executable, "-m", "attnreid.cli.main", "serve", "--index", index, "--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as fh:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    url = None
    while time.monotonic() < deadline:
        if url is None:
            found = PORT_LINE.search(log.read_text())
            url = f"http://127.0.0.1:{found.group(1)}" if found else None
        if url is not None:
            try:
                httpx.get(f"{url}/api/info", timeout=2).raise_for_status()
                return proc, url
            except httpx.HTTPError:
                pass
        if proc.poll() is not None:
            raise RuntimeError(f"attnreid serve exited ({proc.returncode}): {log.read_text()}")
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"attnreid serve did not answer within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill_run(
    gallery: Gallery, folder: Path, *, clients: int = 8, max_delay: float = 2.0,
    rng: random.Random | None = None,
) -> RunResult:  # fmt: skip
    """One run (see the module docstring) in a new, empty ``folder``."""
    rng = rng or random.Random()
    work, elsewhere = folder / "gallery", folder / "elsewhere"
    work.mkdir(parents=True)
    elsewhere.mkdir()
    index_path = work / "g.index"
    GalleryIndex.build(gallery.features, [str(c) for c in gallery.crops], metric="euclidean",
                       info=gallery.source).save(index_path)  # fmt: skip
    base_rows = len(gallery.crops)

    proc, url = _start(index_path.name, work, folder / "serve1.log")  # a relative --index
    acks: list[tuple[int, str, bytes]] = []  # id, SHA-256 and bytes of each acknowledged crop
    refused: dict[int, int] = {}
    lock, first_ack, stop = threading.Lock(), threading.Event(), threading.Event()
    counter = iter(range(10**9))

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while not stop.is_set():
                with lock:
                    k = next(counter)
                data = payload(gallery, k)
                try:
                    res = http.post("/api/crops", files={"image": (f"up{k}.png", data)},
                                    data={"camera": str(k % 3 + 1), "time": str(k)})  # fmt: skip
                except httpx.HTTPError:  # the server is gone
                    return
                with lock:
                    if res.status_code == 200:
                        acks.append((res.json()["id"], hashlib.sha256(data).hexdigest(), data))
                        first_ack.set()
                    else:
                        refused[res.status_code] = refused.get(res.status_code, 0) + 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    delay = rng.uniform(0, max_delay)
    try:
        for t in threads:
            t.start()
        if not first_ack.wait(120):
            raise RuntimeError("no crop was acknowledged within 120 s")
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in threads:
            t.join(120)
    with lock:
        acked = list(acks)

    # restarted from another working directory, with an absolute --index
    proc, url = _start(str(index_path.resolve()), elsewhere, folder / "serve2.log")
    problems, lost = [], 0
    try:
        swept = re.search(r"removed (\d+) crop images", (folder / "serve2.log").read_text())
        with httpx.Client(base_url=url, timeout=60) as http:
            for item_id, sha, data in acked:
                meta = http.get(f"/api/crops/{item_id}")
                image = http.get(f"/api/crops/{item_id}/image")
                same = image.content == data and hashlib.sha256(image.content).hexdigest() == sha
                if meta.status_code != 200 or image.status_code != 200 or not same:
                    lost += 1
                    what = "the bytes sent" if same else "other bytes"
                    problems.append(f"crop {item_id} ({sha[:12]}): {meta.status_code}, image "
                                    f"{image.status_code} ({what})")  # fmt: skip
    finally:
        _stop(proc)
    if len({i for i, _, _ in acked}) != len(acked):
        problems.append("two acknowledgements gave the same id")
    try:
        index = GalleryIndex.load(index_path)
        paths = index.paths
        index.file.close()
    except Exception as exc:  # reported, whatever it is
        problems.append(f"GalleryIndex.load: {type(exc).__name__}: {exc}")
        paths = []
    crops_dir = index_path.with_name(index_path.name + ".crops")
    ours = [p for p in paths[base_rows:] if not Path(p).is_absolute()]
    named = {Path(p).name for p in ours}
    files = list(crops_dir.iterdir()) if crops_dir.is_dir() else []
    tmp = [f for f in [*files, *work.iterdir()] if f.name.endswith(".tmp")]
    return RunResult(
        delay=delay,
        acknowledged=len(acked),
        rows=len(paths) - base_rows if paths else 0,
        lost=lost,
        orphans=sum(f.name not in named for f in files),
        tmp_files=len(tmp),
        missing_images=sum(not (work / p).is_file() for p in ours),
        swept=int(swept.group(1)) if swept else 0,
        refused=dict(refused),
        problems=problems,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument(
        "--max-delay",
        type=float,
        default=2.0,
        help="the kill comes uniformly in 0 .. this many seconds after the first ack",
    )
    p.add_argument("--seed", type=int, default=None, help="of the kill moments (default: random)")
    p.add_argument("--keep", action="store_true", help="keep the runs' folders (printed)")
    args = p.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench_kill."))
    results = []
    try:
        gallery = prepare(tmp / "model")
        for run in range(1, args.runs + 1):
            t0 = time.perf_counter()
            result = kill_run(gallery, tmp / f"run{run:03d}", clients=args.clients,
                              max_delay=args.max_delay, rng=rng)  # fmt: skip
            results.append(result)
            status = "ok" if result.ok else "FAIL"
            print(f"run {run:3d} [{status}, {time.perf_counter() - t0:.0f} s] {result.line()}",
                  flush=True)  # fmt: skip
    finally:
        if args.keep:
            print(f"runs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    failed = sum(not r.ok for r in results)
    print(
        f"{len(results)} runs, {args.clients} clients: acknowledged "
        f"{sum(r.acknowledged for r in results)}, rows found {sum(r.rows for r in results)} "
        f"({sum(r.unacknowledged for r in results)} unacknowledged), lost "
        f"{sum(r.lost for r in results)}, orphans {sum(r.orphans for r in results)}, tmp files "
        f"{sum(r.tmp_files for r in results)}, swept at restart "
        f"{sum(r.swept for r in results)}; {failed} failed runs"
    )
    return 0 if failed == 0 and results else 1


if __name__ == "__main__":
    raise SystemExit(main())
