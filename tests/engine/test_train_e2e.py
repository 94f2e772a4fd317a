"""End to end: train a few iterations on tiny synthetic data, evaluate, resume, reload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from attnreid.config import load_config
from attnreid.engine.checkpoint import load_model_from_checkpoint, read_checkpoint
from attnreid.engine.train import train
from attnreid.errors import CheckpointError
from tests.conftest import REPO, tiny_train_overrides

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


def test_killed_run_resumes_to_the_same_epoch_count(tiny_synth, tmp_path):
    out = tmp_path / "killed"
    args = [
        sys.executable,
        "-m",
        "attnreid.cli.main",
        "train",
        "-c",
        "demo",
        *tiny_train_overrides(
            tiny_synth,
            out,
            **{
                "model.name": "resnet18",
                "model.options": "{}",
                "train.max_epochs": 3,
                "train.max_steps_per_epoch": 60,
                "train.eval_every": 3,
                "data.num_identities": 2,
                "data.num_instances": 1,
                "data.height": 256,
                "data.width": 128,
            },
        ),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "checkpoints" / "epoch001.ckpt"
    deadline = time.time() + 240
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.exists(), proc.stderr.read().decode() if proc.poll() is not None else "timeout"
    time.sleep(1.0)  # inside epoch 2 (about 28 steps of about 0.1 s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_checkpoint(out / "checkpoints" / "last.ckpt")["epoch"] == 0
    done = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_checkpoint(out / "checkpoints" / "last.ckpt")["epoch"] == 2
    evals = json.loads((out / "metrics.json").read_text())["evaluations"]
    assert [e["epoch"] for e in evals] == [3]
