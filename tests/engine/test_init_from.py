"""``model.init_from``: every tensor that fits is loaded, the rest is reported, nothing fitting
is refused; through the CLI, the untrained network started from a checkpoint evaluates exactly
as that checkpoint does (the classifier, the only part skipped, is not used at test time)."""

from __future__ import annotations

import json

import pytest
import torch

from attnreid.cli.main import main
from attnreid.config import load_config
from attnreid.engine.build import build_model_from_config
from attnreid.engine.init_from import init_from
from attnreid.errors import ModelError
from attnreid.models import build_model
from tests.conftest import tiny_train_overrides
from tests.models.test_osnet import _synthetic_torchreid
from tests.reliability.helpers import cli_error, write_checkpoint


def _config(root, out, **extra):
    extra = {"model.name": "resnet18", **extra}
    return load_config("demo", ["~model.options", *tiny_train_overrides(root, out, **extra)])


def test_checkpoint_of_another_class_count(tiny_synth, tmp_path):
    torch.manual_seed(0)
    ckpt = write_checkpoint(tmp_path / "four.ckpt", 4, _config(tiny_synth, tmp_path))
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    model = build_model("resnet18", 6)
    report = init_from(model, ckpt)
    state = model.state_dict()
    assert set(report.skipped) == {"head.classifier.weight"}  # [4, 512] vs [6, 512]
    assert report.untouched == ["head.classifier.weight"]
    assert all(torch.equal(state[k], saved[f"model.{k}"]) for k in report.loaded)
    assert len(report.loaded) == len(state) - 1  # everything else, BN counters included
    assert "loaded" in report.summary() and "head.classifier.weight" in report.summary()


def test_torchreid_file_reaches_backbone_and_head(tmp_path):
    """torchreid's conv1..conv5 map through the backbone's reference layout, fc by name."""
    sd = _synthetic_torchreid("osnet_x0_25", 9)
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "z.pth")
    model = build_model("osnet_x0_25", 5)
    report = init_from(model, tmp_path / "z.pth")
    assert set(report.skipped) == {"classifier.weight", "classifier.bias"}
    reference = build_model("osnet_x0_25", 9, pretrained=str(tmp_path / "z.pth")).eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference(x))


def test_nothing_fitting_is_refused(tmp_path):
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match=r"nothing in .*other.pth fits model 'resnet18' \(0 of 1"):
        init_from(build_model("resnet18", 3), tmp_path / "other.pth")
    with pytest.raises(ModelError, match="model.init_from: .*missing.pth does not exist"):
        init_from(build_model("resnet18", 3), tmp_path / "missing.pth")


@pytest.mark.slow
def test_cli_untrained_from_a_checkpoint_equals_the_checkpoint(tiny_synth, tmp_path, capsys):
    torch.manual_seed(1)
    cfg = _config(tiny_synth, tmp_path / "run")
    ckpt = write_checkpoint(tmp_path / "four.ckpt", 4, cfg)  # tiny_synth has 6 identities
    ov = ["~model.options", *tiny_train_overrides(tiny_synth, tmp_path / "run")]
    ov += ["model.name=resnet18", f"model.init_from={ckpt}"]
    capsys.readouterr()
    assert main(["eval", "-c", "demo", *ov, "--untrained", "--json"]) == 0
    out = capsys.readouterr()
    assert "left as initialised: head.classifier.weight" in out.err
    assert main(["eval", "--checkpoint", str(ckpt), "--json"]) == 0
    assert json.loads(out.out) == json.loads(capsys.readouterr().out)
    model = build_model_from_config(load_config("demo", ov), 6)
    assert model.config["model"]["init_from"] == str(ckpt)
    (tmp_path / "text.pth").write_text("hello\n")
    msg = cli_error(
        capsys,
        "eval",
        "-c",
        "demo",
        *ov[:-1],
        f"model.init_from={tmp_path / 'text.pth'}",
        "--untrained",
    )
    assert msg.startswith(f"cannot read weights file {tmp_path / 'text.pth'}")
