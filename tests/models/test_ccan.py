"""CCAN: stage cut, part stripes, branches and ablations, test feature, attention maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnreid.errors import ModelError
from attnreid.losses import CompositeLoss
from attnreid.models import build_model, list_models
from attnreid.models.attention.cc_attention import (
    CrossCorrelatedAttention,
    SymmetricSelfAttention,
)
from attnreid.models.attention.nonlocal_attention import NonLocalSelfAttention
from attnreid.models.backbones import build_backbone
from attnreid.models.ccan import CCAN
from attnreid.models.ccan_parts import cut_stripes, split_stages, stage_channels, stripe_matrices

SIZE = [64, 32]
LIGHT = {"backbone": "mobilenet_v2", "d": 32, "input_size": SIZE}


def _model(name: str = "ccan", **options: object) -> CCAN:
    torch.manual_seed(0)
    model = build_model(name, 5, **{**LIGHT, **options})
    assert isinstance(model, CCAN)
    return model


def _images(batch: int = 4) -> torch.Tensor:
    return torch.randn(batch, 3, *SIZE, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("googlenet", (480, 832, 1024)),
        ("mobilenet_v2", (32, 96, 1280)),
        ("resnet18", (128, 256, 512)),
    ],
)
def test_stage_cut_chains_to_the_backbone(name: str, channels: tuple[int, int, int]) -> None:
    net = build_backbone(name, "none").eval()
    i1, i2, i3 = split_stages(net)
    assert stage_channels(net) == channels
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        z1 = i1(x)
        z2 = i2(z1)
        assert (z1.shape[1], z2.shape[1]) == channels[:2]
        assert z1.shape[2] == 64 // 8 and z2.shape[2] == 64 // 16  # strides 8 / 16
        torch.testing.assert_close(i3(z2), net(x))


@pytest.mark.parametrize(("height", "parts"), [(8, 4), (10, 4), (6, 1), (4, 8), (12, 6)])
def test_grid_stripes_are_affine_grid_crops(height: int, parts: int) -> None:
    x = torch.randn(2, 3, height, 5)
    stripes = cut_stripes(x, parts, "grid")
    assert stripes.shape == (parts, 2, 3, height, 5)
    for s in range(parts):
        theta = torch.tensor([[[1.0, 0, 0], [0, 1 / parts, -1 + (2 * s + 1) / parts]]])
        grid = F.affine_grid(theta.expand(2, 2, 3), list(x.shape), align_corners=False)
        ref = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
        torch.testing.assert_close(stripes[s], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("height", "parts"), [(16, 4), (32, 4), (12, 6), (8, 8), (6, 2)])
def test_slice_stripes_equal_slicing_then_bilinear_resizing(height: int, parts: int) -> None:
    """The paper: equal horizontal patches, each resized to the full map (bilinear)."""
    x = torch.randn(2, 3, height, 5)
    stripes = cut_stripes(x, parts)  # "slice" is the default
    rows = height // parts
    for s in range(parts):
        patch = x[:, :, rows * s : rows * (s + 1)]
        ref = F.interpolate(patch, size=(height, 5), mode="bilinear", align_corners=False)
        torch.testing.assert_close(stripes[s], ref)
    torch.testing.assert_close(cut_stripes(x, 1)[0], x)


def test_grid_stripes_blend_only_the_outer_half_pixel() -> None:
    x = torch.randn(1, 2, 16, 4)
    sliced, grid = cut_stripes(x, 4, "slice"), cut_stripes(x, 4, "grid")
    # rows 2..13 sample strictly inside the stripe; the grid's outer half pixel blends neighbours
    torch.testing.assert_close(grid[:, :, :, 2:14], sliced[:, :, :, 2:14])
    assert not torch.allclose(grid[1, :, :, :2], sliced[1, :, :, :2])
    with pytest.raises(ModelError, match="stripes"):
        cut_stripes(x, 4, "crop")


@pytest.mark.parametrize(("height", "parts"), [(10, 4), (20, 8), (32, 6), (4, 8), (5, 3)])
def test_slice_stripes_never_read_other_stripes(height: int, parts: int) -> None:
    """With fractional borders, a stripe reads only rows that overlap its extent."""
    mats = stripe_matrices(height, parts)  # (k, H, H)
    torch.testing.assert_close(mats.sum(2), torch.ones(parts, height, dtype=mats.dtype))
    for s in range(parts):
        lo, hi = s * height / parts - 0.5, (s + 1) * height / parts - 0.5  # stripe extent
        read = mats[s].abs().sum(0) > 1e-12  # (H,) rows with a weight
        for r in read.nonzero().flatten().tolist():
            if height >= parts:
                assert r + 0.5 > lo and r - 0.5 < hi, (s, r)
            else:  # stripes thinner than a row: at most the two rows around the stripe
                assert r - 0.5 <= hi and r + 0.5 >= lo, (s, r)


def test_ccan_training_outputs_and_test_feature() -> None:
    model = _model()
    assert model.map_sizes == ((8, 4), (4, 2))
    assert isinstance(model.global_attention, SymmetricSelfAttention)
    assert len(model.streams) == 4
    assert all(isinstance(s.attention, CrossCorrelatedAttention) for s in model.streams)
    x = _images()
    out = model.train()(x)
    assert set(out) == {"global", "local"}
    for branch in out.values():
        assert branch["feat"].shape == (4, 32) and branch["logits"].shape == (4, 5)
    labels = torch.tensor([0, 0, 1, 1])
    loss, parts = CompositeLoss(
        [{"type": "cross_entropy", "epsilon": 0.1}, {"type": "semihard_triplet", "margin": 1.0}]
    )(out, labels)
    assert len(parts) == 4 and torch.isfinite(loss)
    loss.backward()
    assert model.streams[0].attention.alpha.weight.grad is not None
    assert model.global_attention.alpha.weight.grad is not None

    model.eval()
    with torch.no_grad():
        feat = model(x)
        branches = {k: v["feat"] for k, v in _branch_outputs(model, x).items()}
    assert feat.shape == (4, 64) and model.feature_dim == 64
    expected = torch.cat([F.normalize(branches["global"]), F.normalize(branches["local"])], 1)
    torch.testing.assert_close(feat, expected)
    torch.testing.assert_close(feat[:, :32].norm(dim=1), torch.ones(4))


def _branch_outputs(model: CCAN, x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    pooled = model.branch_features(x)
    return {b: dict(zip(("feat", "logits"), model.heads[b](v))) for b, v in pooled.items()}


def test_part_streams_are_unshared_copies_of_the_backbone_stages() -> None:
    model = _model()
    g_params = dict(model.i2.named_parameters())
    for stream in model.streams:
        for name, p in stream.i2.named_parameters():
            torch.testing.assert_close(p, g_params[name])  # initialised from the backbone
            assert p.data_ptr() != g_params[name].data_ptr()  # but not shared
    assert model.streams[0].i3[0] is not model.streams[1].i3[0]


@pytest.mark.parametrize(
    ("name", "branches", "global_attn", "local_attn"),
    [
        ("ccan_g", {"global"}, None, None),
        ("ccan_l", {"local"}, None, None),
        ("ccan_gl", {"global", "local"}, None, None),
        ("ccan_g_ss", {"global"}, SymmetricSelfAttention, None),
        ("ccan_gl_cc", {"global", "local"}, None, CrossCorrelatedAttention),
        ("ccan_g_nl", {"global"}, NonLocalSelfAttention, None),
    ],
)
def test_ablation_variants(name, branches, global_attn, local_attn) -> None:
    model = _model(name)
    out = model.train()(_images())
    assert set(out) == branches
    assert model.feature_dim == 32 * len(branches)
    if global_attn is None:
        assert model.global_attention is None
    else:
        assert type(model.global_attention) is global_attn
    for stream in model.streams:
        assert (
            (stream.attention is None)
            if local_attn is None
            else (type(stream.attention) is local_attn)
        )
    if name == "ccan_l":  # the global I2 / I3 are not needed without CCA or a global branch
        assert model.i2 is None and model.i3 is None


def test_registered_names_and_options() -> None:
    assert {"ccan", "ccan_g", "ccan_l", "ccan_gl", "ccan_g_ss", "ccan_gl_cc", "ccan_g_nl"} <= set(
        list_models()
    )
    model = _model(k_p=3, local_attention="nonlocal")
    assert len(model.streams) == 3 and isinstance(model.streams[0].attention, NonLocalSelfAttention)
    assert model.train()(_images())["local"]["feat"].shape == (4, 32)
    for bad, match in [
        ({"global_attention": "cca"}, "global_attention"),
        ({"local_attention": "softmax"}, "local_attention"),
        ({"k_p": 0}, "k_p"),
        ({"global_branch": False, "local_branch": False}, "at least one"),
        ({"input_size": [64]}, "input_size"),
        ({"cca_query": "both"}, "cca_query"),
        ({"stripes": "crop"}, "stripes"),
    ]:
        with pytest.raises(ModelError, match=match):
            _model(**bad)


def test_cca_query_chooses_the_residual_input() -> None:
    x = _images()
    stream_q, global_q = (_model(cca_query=c).eval() for c in ("stream", "global"))
    record_s: dict = {}
    record_g: dict = {}
    with torch.no_grad():
        stream_q.branch_features(x, record_s)
        global_q.branch_features(x, record_g)
        z1 = stream_q.global_attention(stream_q.i1(x))
        parts1 = cut_stripes(z1, 4)
        parts2 = cut_stripes(stream_q.i2(z1), 4)
        q = stream_q.streams[0].i2(parts1[0])
        attention = stream_q.streams[0].attention
    torch.testing.assert_close(
        record_s["local1_cca"][0], attention(q, parts2[0], return_attention=True)[1]
    )
    torch.testing.assert_close(
        record_g["local1_cca"][0], attention(parts2[0], q, return_attention=True)[1]
    )


def test_input_size_change_raises_a_clear_error() -> None:
    model = _model().eval()
    with pytest.raises(ModelError, match=r"built for 64x32 images .* got 96x32"):
        model(torch.randn(1, 3, 96, 32))
    plain = _model("ccan_gl").eval()  # no size-tied attention: any size runs
    assert plain(torch.randn(1, 3, 96, 32)).shape == (1, 64)


def test_attention_maps() -> None:
    model = _model().train()
    x = _images(2)
    maps = model.attention_maps(x)
    assert model.training  # the mode is restored
    assert set(maps) == {"global_ssa", *(f"local{s}_cca" for s in range(1, 5))}
    assert maps["global_ssa"].shape == (2, 8, 4)
    m2 = model.map_sizes[1][0]
    for s in range(4):
        local = maps[f"local{s + 1}_cca"]
        assert local.shape == (2, 4 * m2, 2)
        outside = torch.ones(4 * m2, dtype=torch.bool)
        outside[s * m2 : (s + 1) * m2] = False
        assert (local[:, outside] == 0).all()
    # a query point selects the row of the nearest position of the attention matrix
    record: dict = {}
    model.eval()
    with torch.no_grad():
        model.branch_features(x, record)
    attention, (m, n), _ = record["global_ssa"]
    point = model.attention_maps(x, query_point=(0.3, 0.9))["global_ssa"]
    row, col = int(0.3 * m), int(0.9 * n)
    torch.testing.assert_close(point, attention[:, row * n + col].reshape(2, m, n))
    torch.testing.assert_close(maps["global_ssa"], attention.mean(1).reshape(2, m, n))
    # (0.3, 0.9) lies in stripe 2 of 4, at 0.2 of its height: that stream's map shows the row
    local_attention, (m, n), stripe = record["local2_cca"]
    assert stripe == 1
    local = model.attention_maps(x, query_point=(0.3, 0.9))["local2_cca"][:, m : 2 * m]
    row = int((0.3 * 4 - 1) * m)
    torch.testing.assert_close(local, local_attention[:, row * n + col].reshape(2, m, n))
    with pytest.raises(ModelError, match="query_point"):
        model.attention_maps(x, query_point=(1.5, 0.2))
    assert _model("ccan_gl").attention_maps(x) == {}


def test_attention_projection_and_stripe_options() -> None:
    def norms(model: CCAN) -> int:
        modules = [model.global_attention, *(s.attention for s in model.streams)]
        return sum(isinstance(m, torch.nn.BatchNorm2d) for a in modules for m in a.modules())

    assert norms(_model()) == 0  # the paper's phi(q W) projections
    assert norms(_model(attention_bn=True)) == 4 * 5  # f, g, h, w of SS_1^G and 4 CC_2,s^L
    x = _images()
    # train mode: batch statistics keep the untrained streams' activations at unit scale
    sliced, grid = _model().train(), _model(stripes="grid").train()
    assert sliced.stripes == "slice" and grid.stripes == "grid"
    with torch.no_grad():
        out_s, out_g = sliced.branch_features(x), grid.branch_features(x)
    torch.testing.assert_close(out_s["global"], out_g["global"])  # same weights, same branch
    assert not torch.allclose(out_s["local"], out_g["local"])  # stripes differ at the borders
