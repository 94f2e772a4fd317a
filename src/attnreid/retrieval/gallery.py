"""Features of a folder of person crops, with a trained checkpoint or an exported ONNX model.

**Metadata of a crop.** From its file name when it follows the Market-1501 convention
(``PPPP_cC[sS_FFFFFF]...``: identity, 1-based camera -> 0-based ``camid``, frame -> ``time``),
else unknown (``pid = camid = -1``, ``time = NaN``). A CSV manifest (``path`` plus any of
``pid``, ``camid``, ``time``; paths relative to the folder) overrides the names, and may list
a subset of the folder: then only its images are used. Its paths must stay inside the folder
unless ``allow_outside_paths`` (:mod:`attnreid.data.manifest`).

**The model.** :func:`load_feature_model` rebuilds the network of a checkpoint (or loads an
ONNX model exported by ``attnreid export onnx``) together with the config it was trained with;
images are resized and normalised as that config does for testing, and flip averaging follows
``eval.flip``. The index metric follows the evaluation's
(:attr:`Scorer.index_metric <attnreid.evaluation.scoring.Scorer.index_metric>`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from attnreid.data.base import ReIDItem
from attnreid.data.datasets.market import MARKET_PATTERN as _NAME
from attnreid.data.images import is_image_file
from attnreid.data.manifest import manifest_file
from attnreid.errors import AttnReidError, DatasetError

__all__ = [
    "Crops",
    "extract_crops",
    "load_feature_model",
    "model_source",
    "parse_crop_name",
    "scan_folder",
]


@dataclass
class Crops:
    """Images with their identity, camera and time (``-1`` / ``NaN`` when unknown)."""

    paths: list[str]
    pids: np.ndarray
    camids: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def items(self) -> list[ReIDItem]:
        return [ReIDItem(p, int(i), int(c)) for p, i, c in zip(self.paths, self.pids, self.camids)]

    def subset(self, keep: np.ndarray) -> Crops:
        idx = np.flatnonzero(keep)
        return Crops(
            [self.paths[i] for i in idx], self.pids[idx], self.camids[idx], self.times[idx]
        )


def parse_crop_name(name: str) -> tuple[int, int, float]:
    """``(pid, camid, time)`` from a Market-1501-style file name, ``(-1, -1, nan)`` otherwise."""
    m = _NAME.match(Path(name).name)
    if not m:
        return -1, -1, math.nan
    return int(m.group(1)), int(m.group(2)) - 1, float(m.group(3)) if m.group(3) else math.nan


def _read_manifest(
    manifest: Path, folder: Path, allow_outside: bool = False
) -> dict[str, dict[str, str]]:
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DatasetError(f"cannot read manifest {manifest}: {exc}") from None
    if not rows or "path" not in rows[0]:
        raise DatasetError(f"manifest {manifest} needs a 'path' column (and pid, camid, time)")
    out = {}
    for n, row in enumerate(rows, start=2):
        where = f"manifest {manifest} line {n}"
        p = manifest_file(
            row["path"], folder, where, allow_outside=allow_outside, switch="--allow-outside-paths"
        )
        out[str(p.resolve())] = row
    return out


def _number(row: dict[str, str], key: str, cast: Any, where: str) -> Any:
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        return cast(text)
    except ValueError:
        raise DatasetError(f"{where}: {key} must be a number, got {text!r}") from None


def scan_folder(
    folder: str | Path, manifest: str | Path | None = None, *, allow_outside_paths: bool = False
) -> Crops:
    """The images below ``folder`` (recursively, sorted by path) and their metadata; with a
    ``manifest``, the images it lists. ``allow_outside_paths``: accept manifest paths that are
    absolute or leave ``folder`` (:mod:`attnreid.data.manifest`)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    rows = _read_manifest(Path(manifest), root, allow_outside_paths) if manifest else None
    if rows is not None:
        files = sorted(Path(p) for p in rows)
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p.name))
    if not files:
        raise DatasetError(f"no images (.jpg, .png, ...) found in {root}")
    found = []  # (path, pid, camid, time)
    for f in files:
        pid, cam, t = parse_crop_name(f.name)
        if rows is not None:
            row = rows[str(f.resolve())]
            where = f"manifest {manifest} ({f.name})"
            pid = v if (v := _number(row, "pid", int, where)) is not None else pid
            cam = v if (v := _number(row, "camid", int, where)) is not None else cam
            t = v if (v := _number(row, "time", float, where)) is not None else t
        found.append((str(f.resolve()), pid, cam, t))
    paths, pids, camids, times = zip(*found)
    return Crops(
        list(paths), np.asarray(pids, np.int64), np.asarray(camids, np.int64), np.asarray(times)
    )


def load_feature_model(
    checkpoint: str | Path | None = None,
    onnx: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """``(model, config, source)``: the network of a checkpoint (in eval mode) or an ONNX model
    run by onnxruntime, the config it was trained with (plus ``overrides``; the model carries
    it), as :func:`attnreid.engine.build.load_model_and_config` loads them, and where it came
    from (:func:`model_source`)."""
    from attnreid.engine.build import load_model_and_config

    model, cfg = load_model_and_config(checkpoint, onnx, overrides=overrides)
    return model, cfg, model_source(model, cfg, checkpoint, onnx)


def model_source(
    model: nn.Module,
    cfg: dict[str, Any],
    checkpoint: str | Path | None = None,
    onnx: str | Path | None = None,
) -> dict[str, Any]:
    """Where a model came from, for an index header: its file, name, feature dimension and
    input size."""
    path = {"checkpoint": checkpoint} if checkpoint is not None else {"onnx": onnx}
    return {
        **{k: str(Path(v).resolve()) for k, v in path.items()},
        "model": model.model_name,
        "feature_dim": int(getattr(model, "feature_dim", 0)),
        "height": cfg["data"]["height"],
        "width": cfg["data"]["width"],
    }


def extract_crops(
    model: nn.Module,
    cfg: dict[str, Any],
    crops: Crops | Sequence[str],
    *,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
) -> torch.Tensor:
    """``(N, D)`` float32 features of the images, as the config extracts test features
    (``device`` None: the config's, the CPU for an onnxruntime model)."""
    from attnreid.evaluation.evaluate import extract_items
    from attnreid.utils.device import model_device

    device = model_device(model, cfg["device"]) if device is None else device
    items = crops.items() if isinstance(crops, Crops) else [ReIDItem(str(p), -1, -1) for p in crops]
    if not items:
        raise AttnReidError("no images to extract features from")
    fs = extract_items(model, items, cfg, device, batch_size=batch_size or None, workers=workers)
    return fs.features
