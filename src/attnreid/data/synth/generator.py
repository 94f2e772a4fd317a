"""Dataset layout, seeding and writing of the synthetic Market-1501-style dataset.

The layout (which identity is seen by which cameras, how many images, the file names, which
images are queries) is planned first, cheaply and sequentially; then every image is rendered
independently from its own seed and written to a temporary sibling folder, which is renamed
into place after ``synth.json`` (written last) completes it. An interrupted run leaves at most
a hidden ``.<name>.tmp-*`` folder, never a folder that looks like a finished dataset.

Seeding: every random decision uses a :class:`numpy.random.Generator` built from a
:class:`numpy.random.SeedSequence` of ``(seed, purpose, ...)``: identity attributes from
``(seed, 1, pid)``, camera models from ``(seed, 2, camera)``, the images of an identity from
``(seed, 5, pid, camera, index)``, its layout from ``(seed, 6, pid)``, distractor / junk
images from ``(seed, 7 | 8, j)``. No global RNG is touched, so the output does not depend on
the order or the thread in which images are rendered.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import shutil
import time
import uuid
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from attnreid.errors import ConfigError, DatasetError
from attnreid.utils.io import atomic_write_text
from attnreid.utils.progress import progress_bar

from .camera import Camera, sample_camera
from .identity import Identity, sample_identity
from .render import render_distractor, render_identity_image, render_junk

FORMAT_VERSION = 1
META_FILE = "synth.json"
SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


@dataclass
class SynthConfig:
    """Size and seed of a synthetic dataset (ranges are inclusive ``(low, high)``).

    Validated on construction and again by :func:`generate_synthetic_reid` (fields may be
    changed after construction); invalid values raise :class:`~attnreid.errors.ConfigError`.
    """

    num_train_ids: int = 150
    num_test_ids: int = 150
    num_cameras: int = 6
    cameras_per_id: tuple[int, int] = (2, 4)
    images_per_camera: tuple[int, int] = (2, 5)
    num_distractors: int = 100
    num_junk: int = 30
    height: int = 128
    width: int = 64
    seed: int = 0
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~attnreid.errors.ConfigError` naming the first invalid field."""
        ranges = [f.name for f in fields(self) if f.type != "int"]  # the (low, high) fields
        for name in ranges:  # accept lists (e.g. from JSON)
            value = getattr(self, name)
            if isinstance(value, list):
                setattr(self, name, tuple(value))
        for name in (f.name for f in fields(self) if f.type == "int"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"SynthConfig.{name} must be an integer, got {value!r}")
        for name in ranges:
            value = getattr(self, name)
            if (
                not isinstance(value, tuple)
                or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                or value[0] > value[1]
            ):
                raise ConfigError(
                    f"SynthConfig.{name} must be an inclusive range (low, high) of integers, "
                    f"got {value!r}"
                )
        if self.num_train_ids < 1 or self.num_test_ids < 1:
            raise ConfigError("SynthConfig needs at least one train and one test identity")
        if self.num_train_ids + self.num_test_ids > 9999:
            raise ConfigError("SynthConfig: at most 9999 identities fit Market-1501's 4-digit pids")
        if not 2 <= self.num_cameras <= 9:
            raise ConfigError(
                f"SynthConfig.num_cameras must be 2..9 (one digit in Market-1501 names), "
                f"got {self.num_cameras}"
            )
        if not 2 <= self.cameras_per_id[0] <= self.num_cameras:
            raise ConfigError(
                f"SynthConfig.cameras_per_id low must be 2..num_cameras ({self.num_cameras}), "
                f"got {self.cameras_per_id}"
            )
        if self.images_per_camera[0] < 1:
            raise ConfigError(
                f"SynthConfig.images_per_camera low must be >= 1, got {self.images_per_camera}"
            )
        if self.num_distractors < 0 or self.num_junk < 0:
            raise ConfigError("SynthConfig.num_distractors and num_junk must be >= 0")
        if self.height < 16 or self.width < 8:
            raise ConfigError(
                f"SynthConfig image size must be at least 16x8, got {self.height}x{self.width}"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"SynthConfig.jpeg_quality must be 1..100, got {self.jpeg_quality}")
        if self.seed < 0:
            raise ConfigError(f"SynthConfig.seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready plain values (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


@dataclass(frozen=True)
class ImageJob:
    """One image to render: where it goes and which seed it comes from."""

    split: str  # train | query | gallery
    filename: str
    kind: str  # person | distractor | junk
    pid: int
    camera: int
    index: int


def _rng(*entropy: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(entropy)))


def _name(pid: int, camera: int, seq: int, frame: int, box: int) -> str:
    head = "-1" if pid < 0 else f"{pid:04d}"
    return f"{head}_c{camera}s{seq}_{frame:06d}_{box:02d}.jpg"


def _identity_layout(config: SynthConfig, pid: int, test: bool) -> list[tuple[int, int]]:
    """(camera, number of images) pairs of identity ``pid``."""
    rng = _rng(config.seed, 6, pid)
    lo, hi = config.cameras_per_id[0], min(config.cameras_per_id[1], config.num_cameras)
    k = int(rng.integers(lo, hi + 1))
    cams = sorted(int(c) + 1 for c in rng.choice(config.num_cameras, size=k, replace=False))
    lo, hi = config.images_per_camera
    counts = [int(rng.integers(lo, hi + 1)) for _ in cams]
    if test:  # every query (one per camera) needs a gallery match from another camera
        for i in range(len(counts)):
            if sum(c >= 2 for c in counts) >= 2:
                break
            counts[i] = max(counts[i], 2)
    return list(zip(cams, counts))


def plan_layout(config: SynthConfig) -> list[ImageJob]:
    """Every image of the dataset, in a fixed order (train, then query/gallery, then extras)."""
    jobs: list[ImageJob] = []
    first_test = config.num_train_ids + 1
    for pid in range(1, config.num_train_ids + config.num_test_ids + 1):
        test = pid >= first_test
        rng = _rng(config.seed, 6, pid, 1)
        for cam, count in _identity_layout(config, pid, test):
            seq = int(rng.integers(1, 7))
            frame = int(rng.integers(1, 150_000))
            for index in range(count):
                frame += int(rng.integers(4, 400))
                box = int(rng.choice((1, 1, 1, 2, 2, 3)))
                split = ("query" if index == 0 else "gallery") if test else "train"
                jobs.append(
                    ImageJob(split, _name(pid, cam, seq, frame, box), "person", pid, cam, index)
                )
    used: set[str] = set()
    for kind, pid, count, purpose in (
        ("distractor", 0, config.num_distractors, 9),
        ("junk", -1, config.num_junk, 10),
    ):
        for j in range(count):
            rng = _rng(config.seed, purpose, j)
            cam = int(rng.integers(1, config.num_cameras + 1))
            seq, frame = int(rng.integers(1, 7)), int(rng.integers(0, 1_000_000))
            box = int(rng.integers(1, 9))
            name = _name(pid, cam, seq, frame, box)
            while name in used:
                frame = (frame + 1) % 1_000_000
                name = _name(pid, cam, seq, frame, box)
            used.add(name)
            jobs.append(ImageJob("gallery", name, kind, pid, cam, j))
    return jobs


@lru_cache(maxsize=32)
def _camera(seed: int, index: int) -> Camera:
    return sample_camera(seed, index)


@lru_cache(maxsize=1024)
def _identity(seed: int, pid: int) -> Identity:
    return sample_identity(_rng(seed, 1, pid))


def render_job(config: SynthConfig, job: ImageJob) -> bytes:
    """Render one image of the plan to JPEG bytes. Depends only on ``config`` and ``job``."""
    camera = _camera(config.seed, job.camera)
    size = (config.width, config.height)
    if job.kind == "person":
        rng = _rng(config.seed, 5, job.pid, job.camera, job.index)
        img = render_identity_image(_identity(config.seed, job.pid), camera, rng, size)
    elif job.kind == "distractor":
        img = render_distractor(camera, _rng(config.seed, 7, job.index), size)
    else:
        img = render_junk(camera, _rng(config.seed, 8, job.index), size)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=config.jpeg_quality)
    return buf.getvalue()


def _summarize(config: SynthConfig, jobs: list[ImageJob]) -> dict[str, Any]:
    out: dict[str, Any] = {"format_version": FORMAT_VERSION, "config": config.to_dict()}
    for split in SPLIT_DIRS:
        sel = [j for j in jobs if j.split == split]
        stats = {
            "images": len(sel),
            "identities": len({j.pid for j in sel if j.pid > 0}),
            "cameras": len({j.camera for j in sel}),
        }
        if split == "gallery":
            stats["distractors"] = sum(j.kind == "distractor" for j in sel)
            stats["junk"] = sum(j.kind == "junk" for j in sel)
        out[split] = stats
    return out


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _matches(meta: dict[str, Any] | None, config: SynthConfig) -> bool:
    return (
        meta is not None
        and meta.get("format_version") == FORMAT_VERSION
        and meta.get("config") == config.to_dict()
    )


def _differences(meta: dict[str, Any] | None, config: SynthConfig) -> str:
    if meta is None:
        return "its synth.json is unreadable"
    if meta.get("format_version") != FORMAT_VERSION:
        return f"format version {meta.get('format_version')!r}, expected {FORMAT_VERSION}"
    old = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    new = config.to_dict()
    diffs = [f"{k}={old.get(k)!r} (wanted {v!r})" for k, v in new.items() if old.get(k) != v]
    return "config differs: " + ", ".join(diffs)


def _write_chunk(tmp: Path, config: SynthConfig, chunk: list[ImageJob]) -> int:
    for job in chunk:
        (tmp / SPLIT_DIRS[job.split] / job.filename).write_bytes(render_job(config, job))
    return len(chunk)


def _process_pool(num_jobs: int) -> ProcessPoolExecutor | None:
    """Worker processes for big runs. Forked, so workers start instantly and inherit the
    imported modules; rendering is pure numpy/Pillow, so forking is safe even when the parent
    has imported torch. ``None`` (render in this process) for small runs or without fork."""
    cpus = os.cpu_count() or 1
    if num_jobs < 400 or cpus < 2 or "fork" not in mp.get_all_start_methods():
        return None
    return ProcessPoolExecutor(min(cpus, 8), mp_context=mp.get_context("fork"))


def _write_all(tmp: Path, config: SynthConfig, jobs: list[ImageJob], progress: bool) -> None:
    for folder in SPLIT_DIRS.values():
        (tmp / folder).mkdir(parents=True)
    chunks = [jobs[i : i + 48] for i in range(0, len(jobs), 48)]
    with progress_bar(len(jobs), "synthetic re-ID images", progress) as advance:
        pool = _process_pool(len(jobs))
        if pool is None:
            for chunk in chunks:
                advance(_write_chunk(tmp, config, chunk))
            return
        try:
            with warnings.catch_warnings():  # Python >= 3.12 warns about fork + threads
                warnings.simplefilter("ignore", DeprecationWarning)
                futures = [pool.submit(_write_chunk, tmp, config, c) for c in chunks]
            for future in as_completed(futures):
                advance(future.result())
        finally:
            # On error or Ctrl-C, drop queued chunks and wait for running ones, so nothing
            # writes into the temporary folder while it is being removed.
            pool.shutdown(wait=True, cancel_futures=True)


def _install(tmp: Path, root: Path) -> None:
    """Move the finished ``tmp`` folder to ``root``, replacing an empty or old dataset."""
    old: Path | None = None
    if root.exists():
        if any(root.iterdir()):
            old = root.with_name(f".{root.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(root, old)
        else:
            root.rmdir()
    try:
        os.rename(tmp, root)
    except OSError:
        if old is not None and not root.exists():  # put the previous dataset back
            os.rename(old, root)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def generate_synthetic_reid(
    root: str | os.PathLike[str],
    config: SynthConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write a synthetic Market-1501-style dataset to ``root`` and return its summary.

    Reuses ``root`` when its ``synth.json`` records the same config; raises
    :class:`~attnreid.errors.DatasetError` when it records another one (unless ``overwrite``)
    or when ``root`` is a non-empty folder that is not a synthetic dataset.

    The summary has ``format_version``, ``config`` (a dict), ``train`` / ``query`` /
    ``gallery`` (each with ``images``, ``identities`` - real ids only, ``cameras``; the gallery
    also ``distractors`` and ``junk``), ``root``, ``reused`` and ``seconds``.
    """
    config = SynthConfig() if config is None else config
    if not isinstance(config, SynthConfig):
        raise ConfigError(f"config must be a SynthConfig, got {type(config).__name__}")
    config.validate()
    config = replace(config)  # a private copy: later changes by the caller cannot interfere
    root = Path(root).expanduser().absolute()
    start = time.perf_counter()

    def result(meta: dict[str, Any], reused: bool) -> dict[str, Any]:
        keys = ("format_version", "config", *SPLIT_DIRS)
        return {
            **{k: meta.get(k) for k in keys},
            "root": str(root),
            "reused": reused,
            "seconds": round(time.perf_counter() - start, 3),
        }

    if root.exists():
        if not root.is_dir():
            raise DatasetError(f"{root} exists and is not a folder")
        meta_path = root / META_FILE
        if meta_path.is_file():
            meta = _read_meta(meta_path)
            if _matches(meta, config):
                return result(meta, reused=True)  # type: ignore[arg-type]
            if not overwrite:
                raise DatasetError(
                    f"{root} holds a synthetic dataset made with another configuration "
                    f"({_differences(meta, config)}); pass overwrite=True to regenerate it"
                )
        elif any(root.iterdir()):
            raise DatasetError(
                f"{root} is not empty and has no {META_FILE}, so it is not a synthetic dataset; "
                "refusing to write into it (choose an empty or new folder)"
            )

    jobs = plan_layout(config)
    meta = _summarize(config, jobs)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _write_all(tmp, config, jobs, progress)
        atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        try:
            _install(tmp, root)
        except OSError:
            # Another process may have installed the same dataset meanwhile.
            if _matches(_read_meta(root / META_FILE), config):
                return result(meta, reused=True)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result(meta, reused=False)
