"""End to end: train a few iterations on tiny synthetic data, evaluate, resume, reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attnreid.config import load_config
from attnreid.engine.checkpoint import load_model_from_checkpoint, read_checkpoint
from attnreid.engine.train import train
from attnreid.errors import CheckpointError
from tests.conftest import tiny_train_overrides

pytestmark = pytest.mark.slow


def _cfg(root: Path, out: Path, **extra: object) -> dict:
    return load_config(None, tiny_train_overrides(root, out, **{"model.name": "resnet18", **extra}))


def test_train_evaluate_resume_and_reload(tiny_synth, tmp_path):
    out = tmp_path / "run"
    result = train(_cfg(tiny_synth, out))
    ckpts = out / "checkpoints"
    stems = ("epoch001", "epoch002", "last")
    names = {f"{stem}.{ext}" for stem in stems for ext in ("ckpt", "safetensors")}
    assert {p.name for p in ckpts.iterdir()} == names  # weights also as .safetensors twins
    assert [e["epoch"] for e in result["evaluations"]] == [1, 2]
    history = json.loads((out / "metrics.json").read_text())["evaluations"]
    assert 0.0 <= history[-1]["mAP"] <= 1.0 and history[-1]["num_valid_queries"] > 0
    assert (out / "logs" / "version_0" / "metrics.csv").is_file() and (
        out / "config.yaml"
    ).is_file()
    assert not list(ckpts.glob("*.tmp"))

    # resume from last.ckpt and train one more epoch
    resumed = train(_cfg(tiny_synth, out, **{"train.max_epochs": 3}), resume=True)
    assert resumed["epochs"] == 3
    assert [e["epoch"] for e in resumed["evaluations"]] == [1, 2, 3]
    assert read_checkpoint(ckpts / "last.ckpt")["epoch"] == 2  # 0-based: the third epoch

    model, meta = load_model_from_checkpoint(ckpts / "last.ckpt")
    assert meta["model"] == "resnet18" and not model.training
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 32)).shape == (2, 512)
    with pytest.raises(CheckpointError, match="holds model 'resnet18' but the config asks"):
        load_model_from_checkpoint(ckpts / "last.ckpt", expect_model="resnet50")
    with pytest.raises(CheckpointError, match="6-class classifier but the dataset has 10"):
        load_model_from_checkpoint(ckpts / "last.ckpt", expect_classes=10)
    with pytest.raises(CheckpointError, match="cannot resume"):
        train(_cfg(tiny_synth, tmp_path / "other"), resume=True)


# A run killed with SIGKILL mid-epoch and resumed: tests/reliability/test_interrupted_training.py
