"""Every preset in configs/ trains one step and evaluates on tiny synthetic data."""

from __future__ import annotations

import json
import shutil

import pytest

from attnreid.config import CONFIG_DIR, load_config
from attnreid.engine.train import train
from tests.conftest import tiny_train_overrides
from tests.engine.oracle import assert_row, capture_scoring, reference_row

PRESETS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
# One step of training is an end-to-end test (`make test`); the quick loop trains one CPU preset
# per network family (the rest differ from it in options, whose models the model tests build).
QUICK = {
    "demo", "baseline_cuhk01_cpu", "osnet_x0_25_cuhk01_cpu", "sona2_net_cpu", "ccan_cpu",
    "duatm_cpu", "duatm_video_cpu", "sa_resnet50_cpu",
}  # fmt: skip
ONE_STEP = [p if p in QUICK else pytest.param(p, marks=pytest.mark.slow) for p in PRESETS]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_training_transforms_build_at_its_own_size(preset):
    """The one-step test below shrinks the sizes; each preset's own training pipeline must
    build as written (a resize_crop smaller than the input once crashed in a loader worker)."""
    from PIL import Image

    from attnreid.data.transforms import build_transforms

    d = load_config(preset)["data"]
    opts = {k: v for k, v in d["transforms"].items() if k != "random_erasing_start_epoch"}
    tf = build_transforms(d["height"], d["width"], train=True, **opts)
    assert tuple(tf(Image.new("RGB", (64, 128))).shape) == (3, d["height"], d["width"])


@pytest.mark.parametrize("preset", ONE_STEP)
def test_preset_trains_one_step(preset, tiny_synth, tmp_path, monkeypatch):
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
    scored = capture_scoring(monkeypatch)
    try:
        result = train(cfg)
        assert result["epochs"] == 1
        assert len(result["evaluations"]) == 1 and len(scored) == 1
        row = result["evaluations"][0]
        # the metrics of the features the evaluation extracted, by the reference loop
        assert_row(row, reference_row(scored[0]))
        history = json.loads((tmp_path / preset / "metrics.json").read_text())["evaluations"]
        assert history == [row]
        assert (tmp_path / preset / "checkpoints" / "last.ckpt").is_file()
    finally:  # full-size networks: about 1 GB of checkpoints per preset, 100 presets
        shutil.rmtree(tmp_path / preset, ignore_errors=True)


OSNET_PAIRS = {
    "sona_bl_dbplus_osnet_cpu": "sona_bl_dbplus_cpu",
    "sona2_net_osnet_cpu": "sona2_net_cpu",
    "ccan_g_osnet_cpu": "ccan_g_cpu",
    "ccan_osnet_cpu": "ccan_cpu",
    "duatm_avgpool_osnet_cpu": "duatm_avgpool_cpu",
    "duatm_osnet_cpu": "duatm_cpu",
    "sa_resnet50_plain_osnet_cpu": "sa_resnet50_plain_cpu",
    "sa_resnet50_osnet_cpu": "sa_resnet50_cpu",
    "osnet_x0_25_cuhk01_cpu": "baseline_cuhk01_cpu",
}


@pytest.mark.parametrize("preset", sorted(OSNET_PAIRS))
def test_osnet_presets_change_only_the_start_and_the_step(preset):
    """Each _osnet_cpu row is its ImageNet-start twin with the MSMT17 OSNet x0.25 start, Adam
    3.5e-4, the start's 256x128 input (DuATM: the twin's 160x64) and one evaluation at the end:
    data, losses, schedule, epochs and evaluation settings are the twin's (the plain OSNet
    row: 16 epochs, its twin's schedule scaled to them)."""
    cfg, twin = load_config(preset), load_config(OSNET_PAIRS[preset])
    assert cfg["model"]["pretrained"].endswith("osnet_x0_25/osnet_x0_25_msmt17.pth")
    assert (cfg["optim"]["name"], cfg["optim"]["lr"]) == ("adam", 3.5e-4)
    size = (160, 64) if preset.startswith("duatm") else (256, 128)
    assert (cfg["data"].pop("height"), cfg["data"].pop("width")) == size
    assert cfg["train"].pop("eval_every") == cfg["train"]["max_epochs"]
    for key in ("height", "width"):
        twin["data"].pop(key)
    if preset.startswith("ccan"):  # the paper's 288x144 resize before the 256x128 crop
        assert cfg["data"]["transforms"].pop("resize_crop") == [288, 144]
        assert twin["data"]["transforms"].pop("resize_crop") == [180, 72]
    twin["train"].pop("eval_every")
    if preset.startswith("osnet"):  # 16 epochs, not 24: the 15-minute budget at 256x128
        assert (cfg["train"].pop("max_epochs"), twin["train"].pop("max_epochs")) == (16, 24)
        assert (cfg["sched"].pop("milestones"), twin["sched"].pop("milestones")) == ([12], [18])
    for key in ("data", "loss", "sched", "train", "eval"):
        assert cfg[key] == twin[key], key
    options = cfg["model"]["options"]
    if preset.startswith("osnet"):
        assert (cfg["model"]["name"], options) == ("osnet_x0_25", {})
    else:
        assert cfg["model"]["name"] == twin["model"]["name"]
        assert options == {**twin["model"]["options"], **options}
        assert options["backbone"] == "osnet_x0_25" and options.get("last_stride", 2) == 2
