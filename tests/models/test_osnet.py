"""OSNet: architecture, torchreid checkpoints, and exactness against an independent forward.

``reference_forward`` below is written from the paper (Zhou et al., ICCV 2019) with plain
``torch.nn.functional`` calls on the raw tensors of a torchreid state dict, addressed by
torchreid's key names; it shares no code with ``attnreid``. The model must give the same
512-d feature (eval mode) to 1e-5.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.models import build_model, list_models, model_options
from attnreid.models.backbones import build_backbone, list_backbones
from attnreid.models.backbones import weights as weights_module

NAMES = ["osnet_x1_0", "osnet_x0_75", "osnet_x0_5", "osnet_x0_25"]
# conv1, conv2, conv3, conv4, conv5 widths; parameters without the classifier (backbone + fc)
CHANNELS = {
    "osnet_x1_0": [64, 256, 384, 512, 512],
    "osnet_x0_75": [48, 192, 288, 384, 384],
    "osnet_x0_5": [32, 128, 192, 256, 256],
    "osnet_x0_25": [16, 64, 96, 128, 128],
}
PARAMS = {"osnet_x1_0": 2_169_508, "osnet_x0_75": 1_285_754, "osnet_x0_5": 630_034}
PARAMS["osnet_x0_25"] = 201_864
WEIGHTS = Path("weights") / "osnet_x0_25"
ZOO = {"market1501": 751, "msmt17": 1041}  # identities of each model-zoo checkpoint
EPS = 1e-5  # BatchNorm's epsilon in torchreid (PyTorch's default)
TOL = 1e-5


# ------------------------------------------------------------- the independent reference
class _Tracked(dict):
    """A state dict that records which keys the reference read."""

    def __init__(self, state: Mapping[str, Tensor]) -> None:
        super().__init__(state)
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> Tensor:
        self.used.add(key)
        return super().__getitem__(key)


def _bn(x: Tensor, sd: Mapping[str, Tensor], p: str) -> Tensor:
    return F.batch_norm(
        x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
        training=False, eps=EPS,
    )  # fmt: skip


def _conv_bn(x: Tensor, sd, p: str, stride: int = 1, padding: int = 0, relu: bool = True):
    x = _bn(F.conv2d(x, sd[f"{p}.conv.weight"], stride=stride, padding=padding), sd, f"{p}.bn")
    return F.relu(x) if relu else x


def _lite3x3(x: Tensor, sd, p: str) -> Tensor:
    """Paper: pointwise 1x1, then depthwise 3x3, then BN and ReLU."""
    depthwise = sd[f"{p}.conv2.weight"]
    x = F.conv2d(x, sd[f"{p}.conv1.weight"])
    x = F.conv2d(x, depthwise, padding=1, groups=depthwise.shape[0])
    return F.relu(_bn(x, sd, f"{p}.bn"))


def _gate(x: Tensor, sd, p: str) -> Tensor:
    """Unified aggregation gate: GAP, FC (C/16), ReLU, FC (C), sigmoid; FCs as 1x1 convs."""
    g = F.adaptive_avg_pool2d(x, 1)
    g = F.relu(F.conv2d(g, sd[f"{p}.fc1.weight"], sd[f"{p}.fc1.bias"]))
    return x * torch.sigmoid(F.conv2d(g, sd[f"{p}.fc2.weight"], sd[f"{p}.fc2.bias"]))


def _os_block(x: Tensor, sd, p: str) -> Tensor:
    reduced = _conv_bn(x, sd, f"{p}.conv1")
    streams = [[f"{p}.conv2a"]]  # T = 4 streams of 1, 2, 3, 4 Lite 3x3 layers
    streams += [[f"{p}.conv2{s}.{i}" for i in range(t)] for s, t in (("b", 2), ("c", 3), ("d", 4))]
    aggregated = torch.zeros_like(reduced)
    for layers in streams:
        y = reduced
        for layer in layers:
            y = _lite3x3(y, sd, layer)
        aggregated = aggregated + _gate(y, sd, f"{p}.gate")  # one gate shared by all streams
    out = _conv_bn(aggregated, sd, f"{p}.conv3", relu=False)
    has_projection = f"{p}.downsample.conv.weight" in sd
    shortcut = _conv_bn(x, sd, f"{p}.downsample", relu=False) if has_projection else x
    return F.relu(out + shortcut)


def reference_forward(sd: Mapping[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """The published OSNet at test time: (conv5 map, 512-d feature)."""
    x = _conv_bn(x, sd, "conv1", stride=2, padding=3)  # 7x7, stride 2
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for stage, transition in (("conv2", True), ("conv3", True), ("conv4", False)):
        x = _os_block(_os_block(x, sd, f"{stage}.0"), sd, f"{stage}.1")
        if transition:  # 1x1 conv + 2x2 average pool, stride 2
            x = F.avg_pool2d(_conv_bn(x, sd, f"{stage}.2.0"), 2, stride=2)
    fmap = _conv_bn(x, sd, "conv5")
    v = F.linear(F.adaptive_avg_pool2d(fmap, 1).flatten(1), sd["fc.0.weight"], sd["fc.0.bias"])
    return fmap, F.relu(_bn(v, sd, "fc.1"))


# ------------------------------------------------------------------------------ helpers
@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(name: str) -> dict[str, Tensor]:
        raise urllib.error.URLError(f"test: no network for {name}")

    monkeypatch.setattr(weights_module, "fetch_state_dict", refuse)


def _to_torchreid(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """attnreid model keys -> torchreid keys (the test's own table)."""
    table = {"backbone.stages.0.": ""}  # stem: conv1, maxpool
    table |= {f"backbone.stages.{i}.": f"conv{i + 1}." for i in range(1, 5)}
    out = {}
    for key, value in state.items():
        for old, new in table.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        out[key] = value.clone()
    return out


def _synthetic_torchreid(name: str, num_classes: int, seed: int = 0) -> dict[str, Tensor]:
    """A torchreid-layout state dict with random weights and non-trivial BatchNorm stats."""
    torch.manual_seed(seed)
    model = build_model(name, num_classes)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            elif isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return _to_torchreid(model.state_dict())


def _check_reference(name: str, sd: Mapping[str, Tensor], model: nn.Module, x: Tensor) -> float:
    """Max |difference| of the model's eval feature and conv5 map from the reference's."""
    tracked = _Tracked(sd)
    with torch.no_grad():
        fmap, feat = reference_forward(tracked, x)
        ours = model.eval()(x)
        our_map = model.backbone(x)
    unused = {k for k in sd if not k.endswith("num_batches_tracked")} - tracked.used
    assert unused <= {"classifier.weight", "classifier.bias"}, sorted(unused)[:5]
    assert ours.shape == (x.shape[0], 512) and our_map.shape == fmap.shape
    assert tuple(fmap.shape[1:]) == (CHANNELS[name][-1], x.shape[2] // 16, x.shape[3] // 16)
    diff = max((ours - feat).abs().max().item(), (our_map - fmap).abs().max().item())
    assert diff <= TOL, f"{name}: max |difference| {diff:.3g}"
    return diff


def _image(path: Path) -> Tensor:
    """A real image at 256x128 with ImageNet normalisation, (1, 3, 256, 128)."""
    img = Image.open(path).convert("RGB").resize((128, 256), Image.BILINEAR)
    arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return ((arr - mean[:, None, None]) / std[:, None, None]).unsqueeze(0)


def _zoo_file(shared: Path, dataset: str) -> Path:
    path = shared / WEIGHTS / f"osnet_x0_25_{dataset}.pth"
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


# ---------------------------------------------------------------------------- structure
def test_registered_names() -> None:
    assert set(NAMES) <= set(list_models()) and set(NAMES) <= set(list_backbones())
    assert set(weights_module.IMAGENET_SOURCES) == set(list_backbones())
    assert model_options("osnet_x0_25") == [
        "backbone", "last_stride", "plugin", "rank_with", "input_size"  # plug-ins: issue 24
    ]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_widths_parameters_and_stages(name: str) -> None:
    model = build_model(name, 751).eval()
    net = model.backbone
    assert net.stage_names == ["stem", "conv2", "conv3", "conv4", "conv5"]
    assert net.stage_channels == CHANNELS[name] and net.stage_strides == [4, 8, 16, 16, 16]
    counted = sum(p.numel() for k, p in model.named_parameters() if not k.startswith("classifier"))
    assert counted == PARAMS[name]
    paper = {"osnet_x1_0": 2.2e6, "osnet_x0_25": 0.2e6}  # the paper: Table 1 and the width ablation
    if name in paper:
        assert abs(counted - paper[name]) < 0.05e6
    assert model.classifier.weight.shape == (751, 512) and model.feature_dim == 512
    with torch.no_grad():
        outs = net.forward_stages(torch.randn(1, 3, 128, 64))
    for out, channels, stride in zip(outs, net.stage_channels, net.stage_strides, strict=True):
        assert tuple(out.shape) == (1, channels, 128 // stride, 64 // stride)


def test_stage_chain_equals_full_forward() -> None:
    model = build_model("osnet_x0_5", 10).eval()
    x = torch.randn(2, 3, 128, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = x
        for stage in model.backbone.stages:
            y = stage(y)
        assert torch.equal(y, model.backbone(x))
        assert torch.equal(y, model.backbone.forward_stages(x)[-1])
        assert torch.allclose(model.fc(y.mean(dim=(2, 3))), model(x), atol=1e-6)


def test_training_outputs_and_backward() -> None:
    model = build_model("osnet_x0_25", 7).train()
    out = model(torch.randn(4, 3, 64, 32))
    assert set(out) == {"global"} and set(out["global"]) == {"feat", "logits"}
    assert out["global"]["feat"].shape == (4, 512) and out["global"]["logits"].shape == (4, 7)
    F.cross_entropy(out["global"]["logits"], torch.arange(4)).backward()
    assert model.backbone.stages[0].conv1.conv.weight.grad is not None


def test_last_stride_and_bad_options() -> None:
    model = build_model("osnet_x0_25", 5, last_stride=1).eval()
    assert model.backbone.stage_strides == [4, 8, 8, 8, 8]
    with torch.no_grad():
        assert tuple(model.backbone(torch.randn(1, 3, 256, 128)).shape) == (1, 128, 32, 16)
        assert model(torch.randn(1, 3, 256, 128)).shape == (1, 512)
    for options, match in [
        ({"last_stride": 3}, "last_stride"),
        ({"dilation": True}, "only supported by the resnet"),
        ({"bogus": 1}, "unknown option"),
    ]:
        with pytest.raises(ModelError, match=match):
            build_backbone("osnet_x1_0", **options)
    with pytest.raises(ModelError, match="backbone must be one of"):
        build_model("osnet_x1_0", 5, backbone="resnet50")


# ---------------------------------------------------------- exactness, synthetic weights
@pytest.mark.parametrize("name", NAMES)
def test_synthetic_torchreid_file_matches_reference(name: str, tmp_path: Path) -> None:
    sd = _synthetic_torchreid(name, 11, seed=NAMES.index(name))
    torch.save(sd, tmp_path / "w.pth")
    model = build_model(name, 11, str(tmp_path / "w.pth"))
    x = torch.randn(2, 3, 128, 64, generator=torch.Generator().manual_seed(2))
    _check_reference(name, sd, model, x)
    assert torch.equal(model.classifier.weight, sd["classifier.weight"])


def test_wrapper_and_prefix_variants_load_identically(tmp_path: Path) -> None:
    sd = _synthetic_torchreid("osnet_x0_25", 3)
    variants = {
        "bare": sd,
        "wrapped": {"state_dict": sd},
        "prefixed": {f"module.{k}": v for k, v in sd.items()},
        "both": {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    }
    states = []
    for label, obj in variants.items():
        torch.save(obj, tmp_path / f"{label}.pth")
        states.append(build_model("osnet_x0_25", 3, str(tmp_path / f"{label}.pth")).state_dict())
    for state in states[1:]:
        assert state.keys() == states[0].keys()
        assert all(torch.equal(state[k], states[0][k]) for k in state)


def test_head_loading_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sd = _synthetic_torchreid("osnet_x0_25", 9)
    torch.save(sd, tmp_path / "w.pth")
    other = build_model("osnet_x0_25", 4, str(tmp_path / "w.pth"))  # another identity count
    assert "skipped the classifier" in capsys.readouterr().err
    assert torch.equal(other.fc[0].weight, sd["fc.0.weight"])
    assert torch.equal(other.fc[1].running_var, sd["fc.1.running_var"])
    assert other.classifier.weight.shape == (4, 512)
    # no head at all: the backbone loads, fc stays initialised, with a note
    torch.save({k: v for k, v in sd.items() if k.startswith("conv")}, tmp_path / "trunk.pth")
    bare = build_model("osnet_x0_25", 9, str(tmp_path / "trunk.pth"))
    assert "no fc embedding" in capsys.readouterr().err
    assert not torch.equal(bare.fc[0].weight, sd["fc.0.weight"])
    # an fc of another width, or a backbone that does not fit, is an error
    torch.save({**sd, "fc.0.weight": torch.zeros(256, 128)}, tmp_path / "badfc.pth")
    with pytest.raises(ModelError, match=r"fc\.0\.weight has shape \[256, 128\]"):
        build_model("osnet_x0_25", 9, str(tmp_path / "badfc.pth"))
    with pytest.raises(ModelError, match="does not fit backbone 'osnet_x0_5'"):
        build_model("osnet_x0_5", 9, str(tmp_path / "w.pth"))


def test_imagenet_from_hub_cache_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    with pytest.raises(ModelError, match=r"drive\.google\.com.*osnet_x0_25_imagenet\.pth"):
        build_backbone("osnet_x0_25", "imagenet")
    cache = tmp_path / "home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    sd = _synthetic_torchreid("osnet_x0_25", 1000)
    torch.save(sd, cache / "osnet_x0_25_imagenet.pth")
    net = build_backbone("osnet_x0_25", "imagenet")
    assert torch.equal(net.stages[4].conv.weight, sd["conv5.conv.weight"])


# ----------------------------------------------------- exactness, the published weights
@pytest.mark.shared
@pytest.mark.parametrize("dataset", sorted(ZOO))
def test_model_zoo_checkpoint_matches_reference(shared: Path, dataset: str) -> None:
    path = _zoo_file(shared, dataset)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model("osnet_x0_25", ZOO[dataset], str(path))
    assert torch.equal(model.classifier.weight, sd["classifier.weight"])
    x = torch.randn(2, 3, 256, 128, generator=torch.Generator().manual_seed(0))
    images = sorted((shared / "data" / "cuhk01" / "campus").glob("*.png"))[:2]
    if not images:
        pytest.skip("no CUHK01 image in ../shared")
    real = torch.cat([_image(p) for p in images])
    diffs = [_check_reference("osnet_x0_25", sd, model, t) for t in (x, real)]
    print(f"{dataset}: max |difference| random {diffs[0]:.3g}, real images {diffs[1]:.3g}")
    # the backbone alone loads the same file (fc and classifier dropped) and gives conv5
    net = build_backbone("osnet_x0_25", str(path)).eval()
    with torch.no_grad():
        assert torch.equal(net(real), model.backbone(real))
