"""SONA-Net: every registered variant's structure and shapes, backbones, maps, options, presets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnreid.config import CONFIG_DIR, load_config
from attnreid.engine.optim import lr_factor
from attnreid.errors import ModelError
from attnreid.losses import CompositeLoss
from attnreid.models import build_model, list_models
from attnreid.models.attention.sona import SONA
from attnreid.models.drop import BatchFeatureErasing, DropBlock, DropBlockPlus
from attnreid.models.sona_net import VARIANTS, SONANet

NUM_CLASSES = 7
# name -> (SONA module keys, drop module type)
EXPECTED = {
    "sona_bl": ([], nn.Identity),
    "sona_bl_db": ([], DropBlock),
    "sona_bl_dbplus": ([], DropBlockPlus),
    "sona_bl_bfe": ([], BatchFeatureErasing),
    "sona_bl_sona2": (["sona2"], nn.Identity),
    "sona_bl_bfe_sona2": (["sona2"], BatchFeatureErasing),
    "sona_net": (["sona2"], DropBlockPlus),
    "sona2_net": (["sona2"], DropBlockPlus),
    "sona3_net": (["sona3"], DropBlockPlus),
    "sona23_net": (["sona2", "sona3"], DropBlockPlus),
    "sona4_global_net": (["sona4_global"], DropBlockPlus),
    "sona4_local_net": (["sona4_local"], DropBlockPlus),
    "sona4_both_net": (["sona4_global", "sona4_local"], DropBlockPlus),
}
SONA_CHANNELS = {"sona2": 512, "sona3": 1024, "sona4_global": 2048, "sona4_local": 2048}


def test_every_variant_is_registered():
    assert set(EXPECTED) == set(VARIANTS)
    assert set(VARIANTS) <= set(list_models())


def _last_stage_shapes(model: SONANet) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    model.backbone.stages[-1].register_forward_hook(
        lambda _m, _i, out: shapes.append(tuple(out.shape))
    )
    return shapes


@pytest.mark.parametrize("name", [n for n in EXPECTED if n != "sona_net"])
def test_variant_structure_and_shapes(name):
    """Structure, training outputs (64x32, batch 2), and eval features at 384x128 and 256x128
    (batch 1) with the dilated ResNet-50's 48x16 / 32x16 map. sona_net is sona2_net's twin."""
    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES)
    keys, drop_type = EXPECTED[name]
    assert sorted(model.sona) == keys
    for key in keys:
        assert model.sona[key].channels == SONA_CHANNELS[key] and model.sona[key].inner == (
            SONA_CHANNELS[key] // 2
        )
    assert type(model.drop) is drop_type
    assert model.feature_dim == 1536 and model.num_classes == NUM_CLASSES

    model.train()
    out = model(torch.randn(2, 3, 64, 32))
    assert set(out) == {"global", "local"}
    assert out["global"]["feat"].shape == (2, 512) and out["local"]["feat"].shape == (2, 1024)
    assert out["global"]["logits"].shape == out["local"]["logits"].shape == (2, NUM_CLASSES)

    model.eval()
    shapes = _last_stage_shapes(model)
    with torch.inference_mode():
        for height, width in ((384, 128), (256, 128)):
            feat = model(torch.randn(1, 3, height, width))
            assert feat.shape == (1, 1536)
            assert torch.isfinite(feat).all()
    assert shapes == [(1, 2048, 48, 16), (1, 2048, 32, 16)]  # stride 8


def test_sona_follows_layer2_and_layer3_of_the_dilated_resnet50():
    """SONA2 takes layer2's 48x16x512 map and SONA3 layer3's 48x16x1024 map at 384x128, and
    each one's output is what the next stage reads."""
    model = build_model("sona23_net", NUM_CLASSES).eval()
    stages = model.backbone.stages
    assert model.backbone.stage_names[2:4] == ["layer2", "layer3"]
    seen: dict[str, tuple] = {}

    def keep(name):
        return lambda _m, inp, out: seen.update({name: (inp[0], out)})

    for key in ("sona2", "sona3"):
        model.sona[key].register_forward_hook(keep(key))
    for index in (2, 3, 4):
        stages[index].register_forward_hook(keep(f"stage{index}"))
    with torch.inference_mode():
        model(torch.randn(1, 3, 384, 128))
    assert seen["sona2"][0].shape == (1, 512, 48, 16)
    assert seen["sona3"][0].shape == (1, 1024, 48, 16)
    assert seen["stage4"][1].shape == (1, 2048, 48, 16)
    assert seen["sona2"][0] is seen["stage2"][1] and seen["stage3"][0] is seen["sona2"][1]
    assert seen["sona3"][0] is seen["stage3"][1] and seen["stage4"][0] is seen["sona3"][1]


def test_drop_and_sona_options_reach_the_modules():
    opts = {"backbone": "resnet18", "drop_rescale": False, "drop_ramp_steps": 100}
    drop = build_model("sona2_net", 3, **opts).drop
    assert (drop.block_size, drop.rescale, drop.ramp_steps) == ((5, 8), False, 100)
    assert build_model("sona_bl_bfe", 3, backbone="resnet18").drop.erase_size(48, 16) == (16, 16)
    sona = build_model("sona2_net", 3, backbone="resnet18", sona_negative_slope=0.2).sona["sona2"]
    assert sona.theta[2].negative_slope == 0.2


def test_sona_net_is_sona2_net():
    a, b = build_model("sona_net", 3), build_model("sona2_net", 3)
    assert list(a.state_dict()) == list(b.state_dict())
    assert type(a.drop) is type(b.drop) and a.drop.block_size == b.drop.block_size == (5, 8)


@pytest.mark.parametrize(
    ("backbone", "sona2", "sona3", "final"),
    [
        ("resnet18", 128, 256, (512, 8, 4)),  # BasicBlocks: last stride 1, stride 16
        ("resnet34", 128, 256, (512, 8, 4)),
        ("resnet101", 512, 1024, (2048, 16, 8)),  # dilated, stride 8
        ("mobilenet_v2", 32, 96, (1280, 8, 4)),  # last stride 1, stride 16
        ("efficientnet_lite0", 40, 112, (1280, 8, 4)),
    ],
)
def test_other_backbones(backbone, sona2, sona3, final):
    model = build_model("sona23_net", NUM_CLASSES, backbone=backbone).eval()
    assert model.sona["sona2"].channels == sona2 and model.sona["sona3"].channels == sona3
    assert model.input_mean == model.backbone.mean
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        assert model.feature_map(x).shape == (2, *final)
        assert model(x).shape == (2, 1536)
    model.train()
    assert model(x)["local"]["feat"].shape == (2, 1024)


def test_no_dilation_and_dims():
    model = build_model("sona_bl", 3, dilation=False, global_dim=64, local_dim=32).eval()
    with torch.no_grad():
        assert model.feature_map(torch.randn(1, 3, 128, 64)).shape == (1, 2048, 8, 4)
        assert model(torch.randn(1, 3, 128, 64)).shape == (1, 96)
    assert model.feature_dim == 96


def test_fused_and_literal_networks_agree():
    torch.manual_seed(0)
    opts = {"backbone": "resnet18", "sona_zero_init": False}
    fused = build_model("sona23_net", 5, sona_impl="fused", **opts).eval()
    literal = build_model("sona23_net", 5, sona_impl="literal", **opts).eval()
    literal.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), literal(x), atol=1e-4, rtol=1e-4)


def test_drop_is_training_only():
    torch.manual_seed(0)
    model = build_model("sona2_net", 5, backbone="resnet18", drop_prob=0.5).eval()
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    seen = []
    model.drop.register_forward_hook(lambda _m, _i, out: seen.append((out == 0).float().mean()))
    model(x)
    assert seen[0] > 0.2  # units are dropped in training


def test_attention_maps():
    model = build_model("sona23_net", 5, backbone="resnet18", sona_zero_init=False).train()
    x = torch.randn(2, 3, 128, 64)
    maps = model.attention_maps(x)
    assert model.training  # the mode is restored
    assert {k: tuple(v.shape) for k, v in maps.items()} == {"sona2": (2, 16, 8), "sona3": (2, 8, 4)}
    torch.testing.assert_close(maps["sona2"].sum((1, 2)), torch.ones(2))
    query = model.attention_maps(x, query_point=(0.5, 0.5))
    torch.testing.assert_close(query["sona3"].sum((1, 2)), torch.ones(2))
    assert not torch.allclose(query["sona3"], maps["sona3"])
    both = build_model("sona4_both_net", 5, backbone="resnet18").attention_maps(x)
    assert {k: tuple(v.shape) for k, v in both.items()} == {
        "sona4_global": (2, 8, 4),
        "sona4_local": (2, 8, 4),
    }
    assert build_model("sona_bl", 5, backbone="resnet18").attention_maps(x) == {}


def test_head_sona_changes_only_its_branch():
    torch.manual_seed(0)
    plain = build_model("sona_bl", 5, backbone="resnet18").eval()
    local = build_model("sona_bl", 5, backbone="resnet18", sona_head="local", sona_zero_init=False)
    local.load_state_dict(plain.state_dict(), strict=False)
    local.eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        a, b = plain(x), local(x)
    torch.testing.assert_close(a[:, :512], b[:, :512])  # global branch untouched
    assert not torch.allclose(a[:, 512:], b[:, 512:])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"sona_stages": [0]}, "out of range"),
        ({"sona_stages": [4]}, "out of range"),
        ({"sona_stages": [2, 2]}, "twice"),
        ({"sona_stages": "2"}, "list of stage indices"),
        ({"sona_stages": [True]}, "integers"),
        ({"sona_head": "stage4"}, "sona_head"),
        ({"sona_impl": "flash"}, "sona_impl"),
        ({"sona_reduction": 0}, "sona_reduction"),
        ({"drop": "cutout"}, "drop"),
        ({"gamma_mode": "keep"}, "gamma_mode"),
        ({"drop_ramp_steps": -5}, "ramp_steps"),
        ({"drop": "dropblock", "block_size": [5, 8]}, "square"),
        ({"drop_prob": 1.5}, "drop_prob"),
        ({"dilation": "yes"}, "dilation"),
        ({"local_dim": 0}, "local_dim"),
        ({"backbone": "mobilenet_v2", "dilation": True}, "dilation"),
        ({"backbone": "resnet18", "dilation": True}, "BasicBlock"),
        ({"backbone": "resnet5"}, "unknown backbone"),
        ({"sona_stage": [2]}, "no option 'sona_stage'; did you mean 'sona_stages'"),
    ],
)
def test_option_errors(options, match):
    options.setdefault("backbone", "resnet18")
    with pytest.raises(ModelError, match=match):
        build_model("sona_net", 5, **options)


def test_preset_losses_train_both_branches():
    cfg = load_config("sona2_net")
    loss = CompositeLoss(cfg["loss"])
    model = build_model("sona2_net", 4, backbone="resnet18").train()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    total, parts = loss(model(torch.randn(8, 3, 64, 32)), labels)
    assert set(parts) == {
        "triplet/global",
        "triplet/local",
        "cross_entropy/global",
        "cross_entropy/local",
    }
    torch.testing.assert_close(total, sum(parts.values()))
    total.backward()
    assert model.sona["sona2"].p.weight.grad.abs().sum() > 0  # the zero-init p learns


FULL_PRESETS = sorted(p.stem for p in CONFIG_DIR.glob("sona*.yaml") if not p.stem.endswith("_cpu"))


def test_presets_cover_every_variant_with_a_cpu_twin():
    assert set(FULL_PRESETS) == set(VARIANTS) - {"sona_net"}
    cpu = {p.stem for p in CONFIG_DIR.glob("sona*_cpu.yaml") if "_osnet" not in p.stem}
    assert cpu == {f"{name}_cpu" for name in FULL_PRESETS}


@pytest.mark.parametrize("preset", FULL_PRESETS)
def test_paper_recipe(preset):
    cfg = load_config(preset)
    d, t = cfg["data"], cfg["data"]["transforms"]
    assert cfg["name"] == preset and cfg["model"]["name"] == preset
    assert cfg["model"]["pretrained"] == "imagenet" and cfg["model"]["options"] == {}
    assert (d["dataset"], d["height"], d["width"]) == ("market1501", 384, 128)
    assert (d["num_identities"], d["num_instances"]) == (32, 4)
    assert (t["flip"], t["cutout"], t["cutout_size"]) == (0.5, 0.5, 64)
    assert t["pad"] == 0 and t["random_erasing"] == 0 and not t["resize_crop"]
    assert cfg["loss"] == [
        {"type": "triplet", "weight": 1.0, "margin": None, "branches": ["global", "local"]},
        {"type": "cross_entropy", "weight": 1.0, "epsilon": 0.1, "branches": ["global", "local"]},
    ]
    assert cfg["optim"]["name"] == "adam" and cfg["optim"]["weight_decay"] == 5e-4
    assert cfg["train"]["max_epochs"] == 400 and cfg["eval"]["flip"] is True
    lr = {e: cfg["optim"]["lr"] * lr_factor(e, **cfg["sched"]) for e in range(400)}
    expected = {0: 1e-4, 4: 1e-4, 5: 2e-4, 44: 9e-4, 45: 1e-3, 50: 1e-3, 199: 1e-3}
    expected |= {200: 1e-4, 299: 1e-4, 300: 1e-5, 399: 1e-5}
    for epoch, value in expected.items():
        assert lr[epoch] == pytest.approx(value), epoch


@pytest.mark.parametrize("preset", FULL_PRESETS)
def test_cpu_variant(preset):
    cfg = load_config(f"{preset}_cpu")
    assert cfg["model"]["name"] == preset and cfg["model"]["pretrained"] == "imagenet"
    assert cfg["model"]["options"]["backbone"] in ("mobilenet_v2", "efficientnet_lite0")
    assert (cfg["data"]["dataset"], cfg["data"]["root"]) == ("cuhk01", "../shared/data/cuhk01")
    assert cfg["data"]["height"] * cfg["data"]["width"] < 384 * 128
    assert cfg["train"]["max_epochs"] < 400 and cfg["sched"]["warmup_mode"] == "staircase"
    assert cfg["loss"] == load_config(preset)["loss"]
    model = build_model(preset, 3, "none", **cfg["model"]["options"])
    assert isinstance(model, SONANet)
    assert all(isinstance(m, SONA) for m in model.sona.values())
