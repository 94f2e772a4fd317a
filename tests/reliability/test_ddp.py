"""Multi-process training on the engine's own DDP support (two CPU processes, gloo).

* Two processes draw P x K batches with :class:`PKBatchSampler` reading rank and world size
  from the process group: within every epoch their identities are disjoint and their batch
  counts equal; and they extract features of shares of the items and gather them, with rank
  0's model, into exactly what one process computes alone.
* ``attnreid train ... train.devices=2`` trains one epoch on the tiny synthetic set; its
  checkpoint records the 2-process sampler, and the evaluation it gathered from both ranks
  equals ``attnreid eval`` of the same checkpoint in one process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from attnreid.cli.main import main
from attnreid.config import load_config
from attnreid.data import PKBatchSampler
from attnreid.data.base import ReIDItem
from attnreid.engine.checkpoint import read_checkpoint
from attnreid.evaluation.distributed import extract_sharded, sync_model_state
from attnreid.evaluation.extractor import FeatureExtractor
from tests.conftest import REPO, tiny_train_overrides, write_image

pytestmark = pytest.mark.slow

PIDS = [pid for pid in range(14) for _ in range(2 + pid % 4)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _items(folder: Path) -> list[ReIDItem]:
    return [
        ReIDItem(str(write_image(folder / f"{i:02d}.jpg", seed=i, size=(16, 32))), i % 5, i % 2)
        for i in range(11)  # 11 items: shares of 5 and 6
    ]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    ).eval()


def _extractor(model: torch.nn.Module) -> FeatureExtractor:
    """32x16 input, batches of 4, flip averaging, on the CPU."""
    cfg = load_config(
        None,
        [
            "data.height=32",
            "data.width=16",
            "data.test_batch_size=4",
            "data.workers=0",
            "eval.flip=true",
            "device=cpu",
        ],
    )
    return FeatureExtractor(model, cfg)


def _worker(rank: int, world: int, port: int, folder: Path) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two processes on small machines
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        sampler = PKBatchSampler(PIDS, num_identities=3, num_instances=2, seed=4)
        epochs = []
        for epoch in range(3):
            sampler.set_epoch(epoch)
            batches = [[PIDS[i] for i in b] for b in sampler]
            epochs.append({"len": len(sampler), "batches": batches})
        model = _model()
        if rank == 1:  # DDP leaves BatchNorm statistics differing between ranks
            model[1].running_mean.add_(5.0)
        sync_model_state(model)
        fs = extract_sharded(_extractor(model), _items(folder))
        result = {"world": sampler.num_replicas, "epochs": epochs, "paths": fs.paths}
        result.update(features=fs.features, pids=torch.from_numpy(fs.pids))
        torch.save(result, folder / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_sample_disjoint_identities_and_gather_features(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), tmp_path), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]  # read from the process group
    for epoch in range(3):
        e0, e1 = (r["epochs"][epoch] for r in ranks)
        assert e0["len"] == e1["len"] == len(e0["batches"]) == len(e1["batches"]) > 0
        ids0 = {p for b in e0["batches"] for p in b}
        ids1 = {p for b in e1["batches"] for p in b}
        assert not ids0 & ids1  # disjoint identities within the epoch
        assert all(len(b) == 6 and len(set(b)) == 3 for b in e0["batches"] + e1["batches"])
    # every rank has all features, in item order, as rank 0's model computes them alone
    alone = _extractor(_model()).extract(_items(tmp_path))
    for r in ranks:
        torch.testing.assert_close(r["features"], alone.features, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(r["pids"].numpy(), alone.pids)
        assert r["paths"] == alone.paths


def test_train_on_two_cpu_processes_then_evaluate_like_one(tiny_synth, tmp_path, capsys):
    out = tmp_path / "ddp"
    ov = tiny_train_overrides(
        tiny_synth,
        out,
        **{
            "data.height": 32,
            "data.width": 16,
            "data.num_identities": 2,  # P = 2 per process: 2 x 2 of the 6 identities
            # ResNet-18: distinct features even untrained (an untrained MobileNetV2's are all
            # but equal, so their ranking would be float rounding)
            "model.name": "resnet18",
            "train.max_epochs": 1,
            "train.devices": 2,
        },
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "LOCAL_RANK"))}
    env.update(PYTHONPATH=str(REPO / "src"), MASTER_PORT=str(_free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "attnreid.cli.main", "train", "-c", "demo", *ov, "~model.options"],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("resnet18 @ epoch 1") == 1  # rank 0 reports, once
    ckpt = read_checkpoint(out / "checkpoints" / "last.ckpt")
    assert ckpt["callbacks"]["SamplerState"]["num_replicas"] == 2
    assert ckpt["global_step"] == 2  # both ranks ran the epoch's 2 steps in lockstep
    gathered = json.loads((out / "metrics.json").read_text())["evaluations"][-1]
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "checkpoints" / "last.ckpt"), "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert gathered["num_valid_queries"] == alone["num_valid_queries"] > 0
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP"):
        assert gathered[key] == pytest.approx(alone[key], abs=1e-9), key


def test_ddp_options():
    from attnreid.config import load_config
    from attnreid.engine.train import _distribution
    from attnreid.errors import ConfigError

    cpu = torch.device("cpu")
    single = _distribution(load_config("demo"), cpu)
    assert single == {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"}
    cfg = load_config("demo", ["train.devices=4", "train.num_nodes=2"])
    assert _distribution(cfg, cpu) == {
        "accelerator": "cpu",
        "devices": 4,
        "num_nodes": 2,
        "strategy": "ddp",
    }
    cfg = load_config("demo", ["train.devices=2", "train.strategy=ddp_find_unused_parameters_true"])
    assert _distribution(cfg, cpu)["strategy"] == "ddp_find_unused_parameters_true"
    with pytest.raises(ConfigError) as exc:
        _distribution(load_config("demo", ["train.strategy=fsdp"]), cpu)
    assert str(exc.value) == (
        "train.strategy must be one of auto, ddp, ddp_find_unused_parameters_true, got 'fsdp'"
    )
    with pytest.raises(ConfigError, match="train.devices must be a positive integer, got 0"):
        _distribution(load_config("demo", ["train.devices=0"]), cpu)
    with pytest.raises(ConfigError, match="'train.devices' must be of type int, got 'all'"):
        load_config("demo", ["train.devices=all"])


def test_an_error_on_rank_0_ends_the_other_ranks():
    """Lightning ends every process when another rank fails, but not when rank 0 does: the
    other ranks would wait in a collective until its timeout."""
    from types import SimpleNamespace

    from attnreid.engine.train import _stop_other_ranks

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:

        def kill(signum):
            other.send_signal(signum)

        launcher = SimpleNamespace(procs=[other], kill=kill)
        _stop_other_ranks(
            SimpleNamespace(global_rank=1, strategy=SimpleNamespace(launcher=launcher))
        )
        assert other.poll() is None  # only rank 0 ends the others
        _stop_other_ranks(
            SimpleNamespace(global_rank=0, strategy=SimpleNamespace(launcher=launcher))
        )
        assert other.wait(timeout=30) == -9
    finally:
        other.kill()
