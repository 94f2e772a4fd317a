"""End to end: train a few iterations on tiny synthetic data, evaluate, resume, reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import attnreid
from attnreid.config import load_config
from attnreid.data import build_dataset, build_transforms, read_image
from attnreid.engine.checkpoint import check_resumable, read_checkpoint
from attnreid.engine.module import ReIDModule
from attnreid.engine.train import train
from attnreid.errors import CheckpointError
from attnreid.models import build_model
from tests.conftest import tiny_train_overrides
from tests.engine.oracle import assert_row, capture_scoring, reference_row

pytestmark = pytest.mark.slow


def _cfg(root: Path, out: Path, **extra: object) -> dict:
    return load_config(None, tiny_train_overrides(root, out, **{"model.name": "resnet18", **extra}))


def test_train_evaluate_resume_and_reload(tiny_synth, tmp_path, monkeypatch):
    out = tmp_path / "run"
    result = train(_cfg(tiny_synth, out))
    ckpts = out / "checkpoints"
    stems = ("epoch001", "epoch002", "last")
    names = {f"{stem}.{ext}" for stem in stems for ext in ("ckpt", "safetensors")}
    assert {p.name for p in ckpts.iterdir()} == names  # weights also as .safetensors twins
    assert [e["epoch"] for e in result["evaluations"]] == [1, 2]
    history = json.loads((out / "metrics.json").read_text())["evaluations"]
    assert history == result["evaluations"]
    # every query of the synthetic set has its identity in another camera of the gallery
    dataset = build_dataset("synth", tiny_synth)
    scorable = sum(
        any(g.pid == q.pid and g.camid != q.camid for g in dataset.gallery) for q in dataset.query
    )
    assert history[-1]["num_valid_queries"] == scorable == len(dataset.query)
    assert (out / "logs" / "version_0" / "metrics.csv").is_file() and (
        out / "config.yaml"
    ).is_file()
    assert not list(ckpts.glob("*.tmp"))

    # resume from last.ckpt and train one more epoch
    scored = capture_scoring(monkeypatch)
    resumed = train(_cfg(tiny_synth, out, **{"train.max_epochs": 3}), resume=True)
    assert resumed["epochs"] == 3
    assert [e["epoch"] for e in resumed["evaluations"]] == [1, 2, 3]
    assert read_checkpoint(ckpts / "last.ckpt")["epoch"] == 2  # 0-based: the third epoch

    # the rows of the first two epochs are kept; the third is that of the resumed epoch,
    # the reference metrics of the features its evaluation extracted
    history = json.loads((out / "metrics.json").read_text())["evaluations"]
    assert history == resumed["evaluations"] and history[:2] == result["evaluations"]
    assert len(scored) == 1
    assert_row(history[-1], reference_row(scored[0]))

    extractor = attnreid.load(ckpts / "last.ckpt", device="cpu")
    model = extractor.model
    assert extractor.source["model"] == "resnet18" and not model.training
    # the last checkpoint holds the weights that epoch was evaluated with: the test features
    # (mean of image and mirror) of two queries, by hand, are the ones scored
    tf = build_transforms(64, 32, train=False, mean=model.input_mean, std=model.input_std)
    x = torch.stack([tf(read_image(item.path)) for item in dataset.query[:2]])
    with torch.no_grad():
        hand = (model(x) + model(x.flip(-1))) / 2
    torch.testing.assert_close(hand, scored[0]["query"].features[:2], atol=1e-5, rtol=1e-4)
    # and the loaded extractor extracts them as evaluation did
    torch.testing.assert_close(
        extractor.extract(dataset.query[:2]).features, hand, atol=1e-5, rtol=1e-4
    )
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 32)).shape == (2, 512)
    # a config for another model is refused (baseline_resnet50: model resnet50)
    refused = "holds model 'resnet18' but config baseline_resnet50 is for 'resnet50'"
    with pytest.raises(CheckpointError, match=refused):
        attnreid.load(ckpts / "last.ckpt", config="baseline_resnet50")
    # loading needs no classifier (any class count loads); resuming does: another class count
    # is refused with one line
    ten = ReIDModule(build_model("resnet18", 10, "none"), extractor.config)
    with pytest.raises(CheckpointError, match="6-class classifier but the dataset has 10"):
        check_resumable(read_checkpoint(ckpts / "last.ckpt"), ckpts / "last.ckpt", ten)
    with pytest.raises(CheckpointError, match="cannot resume"):
        train(_cfg(tiny_synth, tmp_path / "other"), resume=True)


# A run killed with SIGKILL mid-epoch and resumed: tests/reliability/test_interrupted_training.py
