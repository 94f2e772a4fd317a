"""Atomic writes: a write that fails midway leaves the previous file intact, no debris.

For every kind of file a user keeps — training checkpoints and their ``.safetensors`` twins,
feature files, gallery indexes, ONNX exports and reports (``metrics.json``, ``results.md``,
``runs.json``, ``config.yaml``) — the serialiser is made to write part of its output and then
fail (a simulated full disk); the previous file must be byte-identical afterwards and no
temporary file may be left in the folder.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch


class DiskFull(OSError):
    pass


def _fail_midway(calls: list[str]) -> Callable[..., None]:
    """A stand-in serialiser: writes some bytes to its destination, then fails."""

    def write(*args: Any, **kwargs: Any) -> None:
        dest = next(a for a in args if isinstance(a, (str, Path)) or hasattr(a, "write"))
        calls.append(str(getattr(dest, "name", dest)))
        if hasattr(dest, "write"):
            dest.write(b"PARTIAL")
        else:
            Path(dest).write_bytes(b"PARTIAL")
        raise DiskFull("No space left on device (simulated)")

    return write


def _check_intact(path: Path, before: bytes, calls: list[str]) -> None:
    assert calls, "the failing serialiser was not used"
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files


def _previous(path: Path, data: bytes = b"the previous, good file") -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def test_checkpoint(tmp_path, monkeypatch):
    from attnreid.engine.checkpoint import AtomicCheckpointIO

    path = tmp_path / "ckpts" / "last.ckpt"
    before = _previous(path)
    calls: list[str] = []
    monkeypatch.setattr(torch, "save", _fail_midway(calls))
    with pytest.raises(DiskFull):
        AtomicCheckpointIO().save_checkpoint({"epoch": 3, "state_dict": {}}, path)
    _check_intact(path, before, calls)


def test_safetensors_weights(tmp_path, monkeypatch):
    from attnreid.engine import safetensors_io

    path = tmp_path / "ckpts" / "last.safetensors"
    before = _previous(path)
    calls: list[str] = []
    monkeypatch.setattr(safetensors_io, "save_file", _fail_midway(calls))
    with pytest.raises(DiskFull):
        safetensors_io.save_safetensors(torch.nn.Linear(2, 2), path, {"model": "toy"})
    _check_intact(path, before, calls)


def _feature_set(n: int):
    from attnreid.evaluation.features import FeatureSet

    return FeatureSet(
        torch.randn(n, 4), np.arange(n), np.zeros(n, np.int64), [f"{i}.jpg" for i in range(n)]
    )


def test_feature_file(tmp_path, monkeypatch):
    from attnreid.evaluation.features import load_features, save_features

    path = tmp_path / "out" / "features.npz"
    save_features(path, _feature_set(3), _feature_set(5))
    before = path.read_bytes()
    calls: list[str] = []
    monkeypatch.setattr(np, "savez", _fail_midway(calls))
    with pytest.raises(DiskFull):
        save_features(path, _feature_set(30), _feature_set(50))
    _check_intact(path, before, calls)
    monkeypatch.undo()
    assert len(load_features(path)["gallery"]) == 5  # still the previous, loadable file


def test_gallery_index(tmp_path, monkeypatch):
    """The file is written whole beside the previous one (``index_file.write``), which is
    replaced only once it is complete, on disk."""
    from attnreid.retrieval import GalleryIndex, index_file

    feats = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    path = tmp_path / "out" / "gallery.index"
    for previous in (None, b"the previous, good file"):  # an index; another file
        if previous is None:
            GalleryIndex.build(feats[:3], ["a", "b", "c"]).save(path)
            gc.collect()  # its connection closed: no -wal / -shm beside it
        else:
            _previous(path, previous)
        before = path.read_bytes()
        calls: list[str] = []
        real = index_file._insert

        def insert_midway(conn, first, rows, *columns, calls=calls, real=real):
            calls.append("insert")
            real(conn, first, rows[:2], *(c[:2] for c in columns))  # some rows, then
            raise DiskFull("No space left on device (simulated)")

        monkeypatch.setattr(index_file, "_insert", insert_midway)
        with pytest.raises(DiskFull):
            GalleryIndex.build(feats, list("abcdef")).save(path)
        _check_intact(path, before, calls)
        monkeypatch.undo()
        if previous is None:
            assert GalleryIndex.load(path).paths == ["a", "b", "c"]  # the previous, loadable
            gc.collect()


def test_onnx_export(tmp_path, monkeypatch):
    import onnx

    from attnreid.retrieval.export import export_onnx

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    path = tmp_path / "out" / "model.onnx"
    before = _previous(path)
    calls: list[str] = []
    monkeypatch.setattr(onnx, "save", _fail_midway(calls))
    with pytest.raises(DiskFull):
        export_onnx(model, path, height=16, width=8, exporter="torchscript", check=False)
    _check_intact(path, before, calls)


def test_reports(tmp_path, monkeypatch):
    """metrics.json (written by the evaluation callback), and the text reports (results.md,
    runs.json, config.yaml: all through atomic_write_text) when the disk fails after the
    new content was written but before it replaced the old file."""
    from attnreid.engine.callbacks import EvaluationCallback
    from attnreid.evaluation.metrics import RankResult
    from attnreid.utils import io

    out = tmp_path / "run"
    metrics = out / "metrics.json"
    before = _previous(metrics, json.dumps({"evaluations": [{"epoch": 5}]}).encode())
    calls: list[str] = []

    def fsync_fails(fd: int) -> None:
        calls.append(str(fd))
        raise DiskFull("No space left on device (simulated)")

    monkeypatch.setattr(io.os, "fsync", fsync_fails)
    result = RankResult(np.ones(5), 0.5, 0.25, 3, 0)

    class Trainer:
        current_epoch, global_rank = 9, 0

    class Module:
        model = None

        def log(self, *args: Any, **kwargs: Any) -> None:
            pass

    callback = EvaluationCallback(lambda model: result, 10, 10, metrics, echo=False)
    with pytest.raises(DiskFull):
        callback.on_train_epoch_end(Trainer(), Module())
    _check_intact(metrics, before, calls)

    report = tmp_path / "report" / "results.md"
    before = _previous(report, b"| model | R1 |\n")
    calls.clear()
    with pytest.raises(DiskFull):
        io.atomic_write_text(report, "| model | R1 |\n| new | 99.9 |\n")
    _check_intact(report, before, calls)


def test_without_a_failure_the_file_is_replaced(tmp_path):
    """Control for the tests above: the same calls, not failing, do replace the file."""
    from attnreid.evaluation.features import load_features, save_features

    path = tmp_path / "features.npz"
    save_features(path, _feature_set(3))
    save_features(path, _feature_set(7))
    assert len(load_features(path)["query"]) == 7
    assert [p.name for p in tmp_path.iterdir()] == ["features.npz"]
