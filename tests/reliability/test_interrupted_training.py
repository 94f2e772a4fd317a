"""Interrupted training: SIGKILL in the middle of an epoch, resume, same result.

A training subprocess (``attnreid train``) on the tiny synthetic set is killed with SIGKILL in
the middle of its second epoch — it stops at a fixed batch and the test kills it there, so the
point is exact, not timed. ``attnreid train --resume`` then finishes the run from
``last.ckpt`` (end of epoch 1). With the same seed on the CPU, deterministic algorithms and a
seeded data-loader worker, its final metrics and weights equal those of an uninterrupted run:
the checkpoint carries the optimiser, schedule, sampler and RNG state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from attnreid.engine.checkpoint import read_checkpoint
from tests.conftest import REPO, tiny_train_overrides

pytestmark = pytest.mark.slow

# Runs ``attnreid ARGV``; at batch 2 of epoch 2 it writes MARKER and waits to be killed.
_STOP_MID_EPOCH = """
import pathlib, sys, time
from attnreid.engine import module
marker, argv = pathlib.Path(sys.argv[1]), sys.argv[2:]
step = module.ReIDModule.training_step
def training_step(self, batch, batch_idx):
    if self.current_epoch == 1 and batch_idx == 1:
        tmp = marker.with_suffix(".tmp")  # renamed: the test never reads it half-written
        tmp.write_text(str(self.global_step))
        tmp.rename(marker)
        while True:
            time.sleep(0.05)
    return step(self, batch, batch_idx)
module.ReIDModule.training_step = training_step
from attnreid.cli.main import main
sys.exit(main(argv))
"""


def _args(root: Path, out: Path) -> list[str]:
    return [
        "train",
        "-c",
        "demo",
        "~model.options",
        *tiny_train_overrides(
            root,
            out,
            **{
                "model.name": "resnet18",  # distinct features even nearly untrained
                "data.height": 32,
                "data.width": 16,
                "data.workers": 1,  # a seeded worker process
                "train.max_epochs": 3,
                "train.max_steps_per_epoch": 3,
                "train.eval_every": 0,  # evaluate after the last epoch only
                "train.checkpoint_every": 0,  # last.ckpt only
                "train.deterministic": True,
                "sched.warmup_epochs": 2,  # the learning rate changes every epoch
                "sched.milestones": "[2]",
            },
        ),
    ]


def _start(*argv: str) -> subprocess.Popen:
    # one thread each: the runs go two at a time on small machines (and all use the same)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _finish(proc: subprocess.Popen, timeout: float = 400) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-3000:]


def _final(out: Path) -> tuple[dict, dict]:
    evals = json.loads((out / "metrics.json").read_text())["evaluations"]
    assert [e["epoch"] for e in evals] == [3]
    metrics = {k: v for k, v in evals[-1].items() if k != "seconds"}
    return metrics, load_file(out / "checkpoints" / "last.safetensors")


def test_killed_mid_epoch_then_resumed_equals_an_uninterrupted_run(tiny_synth, tmp_path):
    straight, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    marker = tmp_path / "stopped-mid-epoch"
    reference = _start("-m", "attnreid.cli.main", *_args(tiny_synth, straight))
    victim = _start("-c", _STOP_MID_EPOCH, str(marker), *_args(tiny_synth, killed))
    deadline = time.monotonic() + 300
    while not marker.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), victim.stderr.read().decode()[-3000:] if victim.poll() else "timeout"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert marker.read_text() == "4"  # killed after 3 + 1 optimiser steps: mid-epoch 2
    last = read_checkpoint(killed / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 0 and last["global_step"] == 3  # end of epoch 1, intact
    assert last["rng_state"]["torch"].numel() > 0 and "SamplerState" in last["callbacks"]
    assert not list((killed / "checkpoints").glob("*.tmp"))

    _finish(_start("-m", "attnreid.cli.main", *_args(tiny_synth, killed), "--resume"))
    _finish(reference)
    assert read_checkpoint(killed / "checkpoints" / "last.ckpt")["epoch"] == 2  # 3 epochs
    (metrics, weights), (ref_metrics, ref_weights) = _final(killed), _final(straight)
    assert metrics == ref_metrics
    assert weights.keys() == ref_weights.keys()
    assert all(weights[k].equal(ref_weights[k]) for k in weights)
