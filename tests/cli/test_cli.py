from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnreid import __version__
from attnreid.cli.main import main
from attnreid.data import build_dataset, build_transforms, read_image
from attnreid.evaluation.features import load_features
from attnreid.models import build_model
from attnreid.utils.distance import compute_distance
from tests.conftest import tiny_train_overrides
from tests.evaluation.reference import reference_market


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


def test_synth_options_reach_the_generator(capsys, tmp_path):
    argv = ["synth", "--root", str(tmp_path / "s"), "--train-ids", "3", "--test-ids", "2"]
    assert main([*argv, "--cameras", "2", "--seed", "5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    keys = ("num_train_ids", "num_test_ids", "num_cameras", "seed")
    assert [summary["config"][k] for k in keys] == [3, 2, 2, 5]
    assert summary["train"]["identities"] == 3 and summary["query"]["identities"] == 2
    assert main(["synth", "--root", str(tmp_path / "t"), "--cameras", "0"]) == 2
    assert "SynthConfig.num_cameras must be 2..9" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


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


def _reference_metrics(q_feats, g_feats, q, g) -> dict:
    """rank-1 / rank-5 / mAP / mINP of (squared) euclidean distances, by the reference loop."""
    d = compute_distance(torch.as_tensor(q_feats), torch.as_tensor(g_feats)).numpy()
    pids = lambda items: np.array([it.pid for it in items])  # noqa: E731
    cams = lambda items: np.array([it.camid for it in items])  # noqa: E731
    cmc, m_ap, m_inp, valid, skipped = reference_market(d, pids(q), pids(g), cams(q), cams(g))
    return {"rank1": cmc[0], "rank5": cmc[4], "mAP": m_ap, "mINP": m_inp,
            "num_valid_queries": valid, "num_skipped_queries": skipped}  # fmt: skip


def _features_by_hand(model, items) -> np.ndarray:
    """Test features extracted here: the test transform, then the mean of the image's and
    its mirror's features (eval.flip)."""
    tf = build_transforms(64, 32, train=False, mean=model.input_mean, std=model.input_std)
    x = torch.stack([tf(read_image(it.path)) for it in items])
    model.eval()
    with torch.no_grad():
        return ((model(x) + model(x.flip(-1))) / 2).numpy()


def _assert_metrics(got: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.slow
def test_train_eval_extract(tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    ov = tiny_train_overrides(
        tiny_synth,
        out,
        **{"model.name": "resnet18", "train.max_epochs": 1, "train.max_steps_per_epoch": 1},
    )
    assert main(["train", "-c", "demo", *ov, "~model.options"]) == 0
    ckpt = out / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(ckpt), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    # the checkpoint of the last epoch scores exactly what training wrote for that epoch
    last = json.loads((out / "metrics.json").read_text())["evaluations"][-1]
    assert last.pop("epoch") == 1 and last.pop("seconds") >= 0
    assert json.dumps(metrics, sort_keys=True) == json.dumps(last, sort_keys=True)
    assert main(["extract", "--checkpoint", str(ckpt), "-o", str(tmp_path / "f.npz")]) == 0
    feats = load_features(tmp_path / "f.npz")
    assert feats["query"].features.shape[1] == 512
    assert np.all(feats["gallery"].pids >= 0)
    # and what the reference metrics give for the extracted features
    dataset = build_dataset("synth", tiny_synth)
    _assert_metrics(
        metrics,
        _reference_metrics(
            feats["query"].features, feats["gallery"].features, dataset.query, dataset.gallery
        ),
    )
    # a config for another architecture is refused
    assert main(["eval", "-c", "demo", "--checkpoint", str(ckpt)]) == 2
    assert "holds model 'resnet18'" in capsys.readouterr().err
    # the config's network as built (the "before training" row); it needs a config. Its
    # initialisation (from the config's seed, 0) is rebuilt here, its features extracted by hand
    assert main(["eval", "-c", "demo", *ov, "~model.options", "--untrained", "--json"]) == 0
    untrained = json.loads(capsys.readouterr().out)
    assert set(untrained) == set(metrics)
    torch.manual_seed(0)
    model = build_model("resnet18", dataset.num_train_pids, "none")
    _assert_metrics(
        untrained,
        _reference_metrics(
            _features_by_hand(model, dataset.query),
            _features_by_hand(model, dataset.gallery),
            dataset.query,
            dataset.gallery,
        ),
    )
    assert untrained["mAP"] != metrics["mAP"]
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
    assert main(["train", "-c", "demo", *ov, "~model.options"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: unreadable or truncated image")
    assert str(root / "bounding_box_train") in err[-1]
