from __future__ import annotations

import json

import numpy as np
import pytest

from attnreid import __version__
from attnreid.cli.main import main
from attnreid.evaluation.features import load_features
from tests.conftest import tiny_train_overrides


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out
    for cmd in ("train", "eval", "extract", "synth", "demo", "list"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
    assert main(["list", "models"]) == 0
    assert "resnet50" in capsys.readouterr().out


def test_user_errors_are_one_line(capsys, tmp_path):
    assert main(["train", "-c", "demo", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown config key 'optim.lrr'; did you mean 'optim.lr'?"
    assert main(["train", "-c", "demo", f"data.root={tmp_path / 'missing'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "-c", "demo", "model.name=resnet5O", f"data.root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert main(["eval", "--checkpoint", str(tmp_path / "none.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_train_eval_extract(tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    ov = tiny_train_overrides(tiny_synth, out, **{"model.name": "resnet18", "train.max_epochs": 1})
    assert main(["train", "-c", "demo", *ov, "model.options={}"]) == 0
    ckpt = out / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(ckpt), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["rank1"] <= 1
    assert main(["extract", "--checkpoint", str(ckpt), "-o", str(tmp_path / "f.npz")]) == 0
    feats = load_features(tmp_path / "f.npz")
    assert feats["query"].features.shape[1] == 512
    assert np.all(feats["gallery"].pids >= 0)
    # a config for another architecture is refused
    assert main(["eval", "-c", "demo", "--checkpoint", str(ckpt)]) == 2
    assert "holds model 'resnet18'" in capsys.readouterr().err
    # the config's network as built (the "before training" row); it needs a config
    assert main(["eval", "-c", "demo", *ov, "model.options={}", "--untrained", "--json"]) == 0
    untrained = json.loads(capsys.readouterr().out)
    assert set(untrained) == set(metrics) and 0 <= untrained["rank1"] <= 1
    assert main(["eval", "--untrained"]) == 2
    assert "eval --untrained needs --config" in capsys.readouterr().err


@pytest.mark.slow
def test_unreadable_image_during_training_is_one_line(tiny_synth, tmp_path, capsys):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(tiny_synth, root)
    for victim in (root / "bounding_box_train").iterdir():
        victim.write_bytes(victim.read_bytes()[:300])  # truncated JPEGs
    ov = tiny_train_overrides(
        root, tmp_path / "run", **{"model.name": "resnet18", "data.workers": 1}
    )
    assert main(["train", "-c", "demo", *ov, "model.options={}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: unreadable or truncated image")
    assert str(root / "bounding_box_train") in err[-1]
