"""Every preset in configs/ trains one step and evaluates on tiny synthetic data."""

from __future__ import annotations

import shutil

import pytest

from attnreid.config import CONFIG_DIR, load_config
from attnreid.engine.train import train
from tests.conftest import tiny_train_overrides

PRESETS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_trains_one_step(preset, tiny_synth, tmp_path):
    base = load_config(preset)
    extra = {"train.max_epochs": 1, "train.max_steps_per_epoch": 1}
    if base["data"]["transforms"]["resize_crop"]:
        extra["data.transforms.resize_crop"] = "[72, 36]"
    options = dict(base["model"]["options"])
    options.pop("input_size", None)  # the engine derives it from data.height / data.width
    cfg = load_config(
        preset, [*tiny_train_overrides(tiny_synth, tmp_path / preset, **extra)],
        model={"options": options},
    )
    try:
        result = train(cfg)
        assert result["epochs"] == 1
        assert len(result["evaluations"]) == 1
        assert 0.0 <= result["evaluations"][0]["mAP"] <= 1.0
        assert (tmp_path / preset / "checkpoints" / "last.ckpt").is_file()
    finally:  # full-size networks: about 1 GB of checkpoints per preset, 100 presets
        shutil.rmtree(tmp_path / preset, ignore_errors=True)
