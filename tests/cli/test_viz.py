"""``attnreid viz attention``: from a trained checkpoint to a PNG of its attention maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import attnreid
from attnreid.cli.main import main
from attnreid.config import load_config
from attnreid.data import build_transforms, read_image
from attnreid.models import build_model
from attnreid.viz.attention import HEADER_PX
from tests.conftest import tiny_train_overrides, write_image
from tests.viz.expected import blended_overlay


def _fake_checkpoint(path, name: str, options: dict) -> None:
    """An attnreid checkpoint of an untrained model (no training needed for the error paths)."""
    model = build_model(name, 5, "none", **options)
    cfg = {k: v for k, v in load_config("demo").items() if not k.startswith("_")}
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {
                "attnreid": {"model": name, "num_classes": 5, "options": options},
                "config": cfg,
            },
        },
        path,
    )


def test_help(capsys):
    for argv in (["viz", "--help"], ["viz", "attention", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    assert "--point" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["viz"])  # a sub-command is required
    assert exc.value.code == 2


def _hand_map(model, image, height, width, point=None) -> torch.Tensor:
    """SA-ResNet's attention map computed here: the scores of the attention block over the
    backbone's map of the test-transformed image; the column mean, or the row of the cell
    holding ``point``."""
    x = build_transforms(height, width, train=False, mean=model.input_mean,
                         std=model.input_std)(image)[None]  # fmt: skip
    with torch.no_grad():
        fmap = model.backbone(x)
        scores = model.attention.attention(fmap)[0]  # (L, L), row j attends over columns i
    h, w = fmap.shape[-2:]
    if point is None:
        return scores.mean(0).view(h, w)
    row = min(int(point[0] * h), h - 1) * w + min(int(point[1] * w), w - 1)
    return scores[row].view(h, w)


@pytest.mark.slow
def test_viz_attention_of_a_trained_model(tiny_synth, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    ov = tiny_train_overrides(
        tiny_synth,
        out,
        **{"model.name": "sa_resnet", "train.max_epochs": 1, "train.max_steps_per_epoch": 1},
    )
    assert (
        main(
            [
                "train",
                "-c",
                "sa_resnet50_cpu",
                *ov,
                "model.options={backbone: resnet18, last_stride: 1}",
            ]
        )
        == 0
    )
    ckpt = out / "checkpoints" / "last.ckpt"
    query = next((tiny_synth / "query").iterdir())
    png = tmp_path / "att.png"
    capsys.readouterr()
    assert main(["viz", "attention", "--checkpoint", str(ckpt), "--image", str(query),
                 "-o", str(png)]) == 0  # fmt: skip
    assert "self_attention (4, 2)" in capsys.readouterr().out  # 64x32, resnet18, stride 16
    img = np.asarray(Image.open(png).convert("RGB")).astype(float)
    # the training size (64x32), two panels (image, self_attention), magnified twice
    assert img.shape == (64 * 2 + HEADER_PX, 2 * 32 * 2, 3)
    model = attnreid.load(ckpt, device="cpu").model
    image = read_image(query)
    attention = _hand_map(model, image, 64, 32)
    assert not torch.allclose(attention, attention.mean().expand_as(attention))  # not flat
    # the image panel, and over it the blend of the image and the coloured map, by hand
    base, overlay = img[HEADER_PX:, :64], img[HEADER_PX:, 64:]
    assert np.abs(overlay - blended_overlay(base, attention, scale=2)).max() <= 2
    assert np.abs(overlay - blended_overlay(base, attention.flip(0), scale=2)).mean() > 5

    # with a query point (the row of its cell), and the default output name in the folder
    monkeypatch.chdir(tmp_path)
    assert main(["viz", "attention", "--checkpoint", str(ckpt), "--image", str(query),
                 "--point", "0.25,0.5", "--scale", "1"]) == 0  # fmt: skip
    marked = np.asarray(Image.open(tmp_path / f"{query.stem}_attention.png").convert("RGB"))
    assert marked.shape == (64 + HEADER_PX, 2 * 32, 3)
    base, overlay = marked[HEADER_PX:, :32].astype(float), marked[HEADER_PX:, 32:].astype(float)
    expected = blended_overlay(base, _hand_map(model, image, 64, 32, (0.25, 0.5)), scale=1)
    # away from the cross marking the point (0.25 * 64, 0.5 * 32) = (16, 16) on both panels
    rows, cols = np.mgrid[:64, :32]
    far = np.hypot(rows - 16, cols - 16) > 10
    assert np.abs(overlay - expected)[far].max() <= 2


def test_models_without_attention_are_refused(tmp_path, capsys):
    image = write_image(tmp_path / "q.jpg", size=(32, 64))
    baseline = tmp_path / "baseline.ckpt"
    _fake_checkpoint(baseline, "resnet18", {})
    assert main(["viz", "attention", "--checkpoint", str(baseline), "--image", str(image)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model 'resnet18'") and "no attention maps" in err
    assert err.count("\n") == 1
    plain = tmp_path / "plain.ckpt"
    _fake_checkpoint(plain, "sa_resnet", {"backbone": "resnet18", "attention": "none"})
    assert main(["viz", "attention", "--checkpoint", str(plain), "--image", str(image)]) == 2
    assert "no attention module" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


def test_bad_arguments(tmp_path, capsys):
    ckpt = tmp_path / "sa.ckpt"
    _fake_checkpoint(ckpt, "sa_resnet", {"backbone": "resnet18"})
    with pytest.raises(SystemExit) as exc:
        main(["viz", "attention", "--checkpoint", str(ckpt), "--image", "x.jpg", "--point", "2,0"])
    assert exc.value.code == 2
    assert "must lie in [0, 1]" in capsys.readouterr().err
    missing = tmp_path / "missing.jpg"
    assert main(["viz", "attention", "--checkpoint", str(ckpt), "--image", str(missing)]) == 2
    assert "image not found" in capsys.readouterr().err
