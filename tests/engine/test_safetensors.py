"""Weights saved as .safetensors beside each training checkpoint, and loaded back."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import attnreid
from attnreid.config import load_config
from attnreid.engine.callbacks import EpochCheckpoint
from attnreid.engine.module import ReIDModule
from attnreid.engine.safetensors_io import read_safetensors, save_safetensors
from attnreid.errors import CheckpointError
from attnreid.models import build_model


class StubTrainer:
    """What EpochCheckpoint uses of a Lightning trainer."""

    is_global_zero = True

    def __init__(self, module: ReIDModule, epoch: int) -> None:
        self.module, self.current_epoch = module, epoch

    def save_checkpoint(self, path) -> None:
        state = {f"model.{k}": v for k, v in self.module.model.state_dict().items()}
        hp = dict(self.module.hparams)
        torch.save({"state_dict": state, "hyper_parameters": hp, "epoch": self.current_epoch}, path)


@pytest.fixture
def module():
    torch.manual_seed(0)
    model = build_model("resnet18", 5, "none")
    return ReIDModule(model, load_config("demo", ["model.name=resnet18"]))


def test_epoch_checkpoint_writes_safetensors_twins(tmp_path, module):
    cb = EpochCheckpoint(tmp_path, every=2)
    for epoch in range(2):
        cb.on_train_epoch_end(StubTrainer(module, epoch), module)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["epoch002.ckpt", "epoch002.safetensors", "last.ckpt", "last.safetensors"]
    x = torch.randn(2, 3, 64, 32)
    a = attnreid.load(tmp_path / "last.ckpt", device="cpu")
    b = attnreid.load(tmp_path / "last.safetensors", device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(a.model(x), b.model(x), rtol=0, atol=0)
    assert b.source["model"] == "resnet18" and b.source["epoch"] == 1 == a.source["epoch"]
    assert b.config["model"]["name"] == "resnet18" and b.model.config is b.config
    assert not b.model.training


def test_clear_errors(tmp_path, module):
    path = save_safetensors(
        module.model, tmp_path / "w.safetensors", dict(module.hparams["attnreid"])
    )
    with pytest.raises(
        CheckpointError, match="holds model 'resnet18' but config sona2_net_cpu is for 'sona2_net'"
    ):
        attnreid.load(path, config="sona2_net_cpu")
    # the header names another architecture: the weights do not fit it
    other = dict(module.hparams["attnreid"], model="mobilenet_v2", options={})
    save_safetensors(module.model, tmp_path / "o.safetensors", other)
    with pytest.raises(CheckpointError, match="does not fit model 'mobilenet_v2'"):
        attnreid.load(tmp_path / "o.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not written by attnreid training"):
        attnreid.load(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        attnreid.load(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_safetensors(tmp_path / "missing.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "bad.safetensors"), metadata={"attnreid": "{"})
    with pytest.raises(CheckpointError, match="malformed attnreid header"):
        read_safetensors(tmp_path / "bad.safetensors")


def test_header_is_plain_json(tmp_path, module):
    path = save_safetensors(
        module.model, tmp_path / "w.safetensors", {"model": "resnet18"}, {"a": 1, "_x": 2}, 7
    )
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])["__metadata__"]
    assert json.loads(header["attnreid"]) == {"model": "resnet18"}
    assert json.loads(header["attnreid.config"]) == {"a": 1} and header["attnreid.epoch"] == "7"
