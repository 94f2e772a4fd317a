"""SA-ResNet's self-attention block (eqs. 2-6) and the spatial attention of its Table 3."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnreid.errors import ConfigError, ModelError
from attnreid.models.attention.self_attention import SelfAttention, query_index
from attnreid.models.attention.spatial_attention import SpatialAttention


def _set_alpha(block: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        block.alpha.fill_(value)


@pytest.mark.parametrize("scores", ["softmax", "sigmoid"])
@pytest.mark.parametrize("aggregation", ["position", "global"])
def test_alpha_zero_is_identity(scores, aggregation):
    torch.manual_seed(0)
    block = SelfAttention(64, scores=scores, aggregation=aggregation)
    x = torch.randn(2, 64, 8, 4)
    assert block.alpha.item() == 0.0  # initialised to 0 (eq. 6)
    assert torch.equal(block(x), x)
    _set_alpha(block, 1.0)
    assert not torch.allclose(block(x), x)


@pytest.mark.parametrize("size", [(256, 128), (384, 128)])
def test_shapes_at_paper_input_sizes(size):
    # ResNet-50 with last stride 2: 256x128 -> 8x4, 384x128 -> 12x4, 2048 channels
    h, w = size[0] // 32, size[1] // 32
    block = SelfAttention(2048)
    assert block.f.out_channels == block.g.out_channels == block.h.out_channels == 256  # D/8
    assert block.out.out_channels == 2048
    x = torch.randn(2, 2048, h, w)
    _set_alpha(block, 0.5)
    assert block(x).shape == (2, 2048, h, w)
    s = block.attention(x)
    assert s.shape == (2, h * w, h * w)
    assert block.maps(x).shape == block.maps(x, (0.2, 0.9)).shape == (2, h, w)


def test_softmax_rows_sum_to_one_and_sigmoid_rows_do_not():
    torch.manual_seed(1)
    x = torch.randn(3, 32, 6, 4)
    s = SelfAttention(32, scores="softmax").attention(x)
    assert torch.all(s >= 0)
    torch.testing.assert_close(s.sum(dim=-1), torch.ones(3, 24))
    sig = SelfAttention(32, scores="sigmoid").attention(x)
    assert torch.all((sig > 0) & (sig <= 1))
    assert not torch.allclose(sig.sum(dim=-1), torch.ones(3, 24))


def _reference(block: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """A literal loop over positions: e_ij = relu(f x_i) . relu(g x_j), s_j = softmax_i,
    o_j = sum_i s_ji relu(h x_i), y_j = alpha * W_out o_j + x_j."""
    b, d, hh, ww = x.shape
    xs = x.flatten(2)  # (B, D, L)
    length = hh * ww

    def conv(layer: torch.nn.Conv2d, v: torch.Tensor) -> torch.Tensor:
        out = layer.weight[:, :, 0, 0] @ v
        return out if layer.bias is None else out + layer.bias

    out = torch.empty_like(xs)
    for n in range(b):
        for j in range(length):
            e = torch.stack(
                [
                    F.relu(conv(block.f, xs[n, :, i])) @ F.relu(conv(block.g, xs[n, :, j]))
                    for i in range(length)
                ]
            )
            s = e.softmax(0)
            o = sum(s[i] * F.relu(conv(block.h, xs[n, :, i])) for i in range(length))
            out[n, :, j] = block.alpha * conv(block.out, o) + xs[n, :, j]
    return out.reshape(b, d, hh, ww)


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_matches_a_literal_per_position_implementation(qkv_bias):
    torch.manual_seed(2)
    block = SelfAttention(16, key_reduction=4, value_reduction=2, qkv_bias=qkv_bias)
    _set_alpha(block, 0.7)
    x = torch.randn(2, 16, 3, 2)
    with torch.no_grad():
        torch.testing.assert_close(block(x), _reference(block, x))


def test_qkv_bias_option_removes_the_f_g_h_biases():
    paper, biased = SelfAttention(64), SelfAttention(64, qkv_bias=True)
    names = {n for n, _ in paper.named_parameters()}
    # eq. 2: f(x) = W_f x, g(x) = W_g x, h(x) = W_h x; the output projection keeps its bias
    assert names == {"f.weight", "g.weight", "h.weight", "out.weight", "out.bias", "alpha"}
    assert {n for n, _ in biased.named_parameters()} == names | {"f.bias", "g.bias", "h.bias"}
    assert all(getattr(paper, k).bias is None for k in "fgh")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(biased) - count(paper) == 8 + 8 + 8  # D / 8 = 8 biases in each of f, g, h
    assert "qkv_bias=False" in repr(paper) and "qkv_bias=True" in repr(biased)


def test_weights_trained_with_biases_load_into_the_default_block():
    """A checkpoint of the biased block (the only form before qkv_bias existed) loads into
    a block built with the default and computes exactly what was trained."""
    torch.manual_seed(6)
    old = SelfAttention(32, qkv_bias=True)
    with torch.no_grad():
        for k in "fgh":
            getattr(old, k).bias.normal_()
    _set_alpha(old, 0.5)
    new = SelfAttention(32)
    new.load_state_dict(old.state_dict())  # strict: nothing missing or unexpected
    assert new.qkv_bias is True and all(getattr(new, k).bias is not None for k in "fgh")
    x = torch.randn(2, 32, 4, 2)
    with torch.no_grad():
        assert torch.equal(new(x), old(x))
    # and weights without biases load into the default block unchanged
    plain = SelfAttention(32)
    plain.load_state_dict(SelfAttention(32).state_dict())
    assert plain.qkv_bias is False and plain.f.bias is None


def test_global_aggregation_adds_the_same_vector_everywhere():
    torch.manual_seed(3)
    block = SelfAttention(32, aggregation="global")
    _set_alpha(block, 1.0)
    x = torch.randn(2, 32, 4, 3)
    delta = (block(x) - x).flatten(2)  # (B, D, L)
    torch.testing.assert_close(delta, delta[:, :, :1].expand_as(delta))


def test_alpha_receives_gradient_at_initialisation():
    torch.manual_seed(4)
    block = SelfAttention(32)
    block(torch.randn(2, 32, 4, 2)).pow(2).sum().backward()
    assert block.alpha.grad is not None and float(block.alpha.grad.abs()) > 0


def test_maps_follow_the_query_point():
    torch.manual_seed(5)
    block = SelfAttention(32)
    x = torch.randn(1, 32, 8, 4)
    s = block.attention(x)  # (1, 32, 32)
    # (y, x) = (0.3, 0.8) lies in cell row 2, column 3 of an 8x4 map
    assert query_index((0.3, 0.8), 8, 4) == 2 * 4 + 3
    torch.testing.assert_close(block.maps(x, (0.3, 0.8)), s[:, 11].reshape(1, 8, 4))
    torch.testing.assert_close(block.maps(x), s.mean(1).reshape(1, 8, 4))
    assert query_index((1.0, 1.0), 8, 4) == 31 and query_index((0.0, 0.0), 8, 4) == 0
    for bad in [(1.5, 0.2), (0.2, -0.1), (0.5,), "ab"]:
        with pytest.raises(ConfigError):
            query_index(bad, 8, 4)


def test_scale_option_divides_the_responses():
    torch.manual_seed(6)
    plain = SelfAttention(64)
    scaled = SelfAttention(64, scale=True)
    scaled.load_state_dict(plain.state_dict())
    x = torch.randn(1, 64, 4, 2)
    fx = F.relu(plain.f(x)).flatten(2)
    gx = F.relu(plain.g(x)).flatten(2)
    energy = gx.transpose(1, 2) @ fx
    torch.testing.assert_close(scaled.attention(x), (energy / 8**0.5).softmax(-1))  # D/8 = 8
    torch.testing.assert_close(plain.attention(x), energy.softmax(-1))


def test_bad_options_are_model_errors():
    with pytest.raises(ModelError, match="scores"):
        SelfAttention(64, scores="tanh")
    with pytest.raises(ModelError, match="aggregation"):
        SelfAttention(64, aggregation="sum")
    with pytest.raises(ModelError, match="not divisible"):
        SelfAttention(60, key_reduction=8)
    with pytest.raises(ModelError, match="value_reduction"):
        SelfAttention(64, value_reduction=0)
    with pytest.raises(ModelError, match="scores"):
        SpatialAttention(64, scores="relu")


def test_spatial_attention_mask_and_fusion():
    torch.manual_seed(7)
    block = SpatialAttention(32)
    x = torch.randn(2, 32, 8, 4)
    mask = block.mask(x)
    assert mask.shape == (2, 8, 4)
    torch.testing.assert_close(mask.sum(dim=(1, 2)), torch.ones(2))  # softmax over positions
    # one value per cell from its own vector: w^T x_i + b, then a softmax over the 32 cells
    w, bias = block.score.weight[0, :, 0], block.score.bias[0]
    logits = torch.einsum("d,bdhw->bhw", w, x) + bias
    torch.testing.assert_close(mask, logits.flatten(1).softmax(1).reshape(2, 8, 4))
    # no gate (the paper's description): the re-weighted cells are added to the map
    y = block(x)
    torch.testing.assert_close(y, x + 32 * mask.unsqueeze(1) * x)
    # after GAP: the plain average plus the attention-weighted sum of the cells
    pooled = (mask.flatten(1)[:, None, :] * x.flatten(2)).sum(-1)
    torch.testing.assert_close(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)) + pooled)
    # uniform scores: m = L * (1 / L) = 1 everywhere, so y = 2 x
    with torch.no_grad():
        block.score.weight.zero_()
    torch.testing.assert_close(block(x), 2 * x)
    sig = SpatialAttention(32, scores="sigmoid")
    m = sig.mask(x)
    assert torch.all((m > 0) & (m < 1))
    torch.testing.assert_close(sig(x), x * (1 + m.unsqueeze(1)))


def test_spatial_attention_gate_starts_as_identity():
    torch.manual_seed(8)
    block = SpatialAttention(16, gate=True)
    x = torch.randn(2, 16, 4, 2)
    assert block.alpha.item() == 0.0
    assert torch.equal(block(x), x)
    with torch.no_grad():
        block.alpha.fill_(0.5)
    m = 8 * block.mask(x).unsqueeze(1)
    torch.testing.assert_close(block(x), x + 0.5 * m * x)


def test_spatial_attention_kernel_runs_along_the_row_major_positions():
    torch.manual_seed(9)
    block = SpatialAttention(8, kernel_size=3)
    x = torch.randn(1, 8, 3, 2)
    seq = x.flatten(2)  # (1, 8, 6), row-major
    padded = F.pad(seq, (1, 1))
    w, bias = block.score.weight[0], block.score.bias[0]  # (8, 3)
    logits = torch.stack([(w * padded[0, :, i : i + 3]).sum() + bias for i in range(6)])
    torch.testing.assert_close(block.mask(x), logits.softmax(0).reshape(1, 3, 2))
    # the end of row 0 (cell 1) sees the start of row 1 (cell 2): changing cell 2 moves it
    x2 = x.clone()
    x2[0, :, 1, 0] += 1.0
    a, b = block.score(seq)[0, 0], block.score(x2.flatten(2))[0, 0]
    assert not torch.isclose(a[1], b[1]) and torch.isclose(a[5], b[5])
    for bad in (0, 2, -1, True):
        with pytest.raises(ModelError, match="kernel_size"):
            SpatialAttention(8, kernel_size=bad)


def test_sigmoid_mean_option():
    torch.manual_seed(10)
    mean = SelfAttention(16, scores="sigmoid")
    total = SelfAttention(16, scores="sigmoid", sigmoid_mean=False)
    total.load_state_dict(mean.state_dict())
    _set_alpha(mean, 1.0)
    _set_alpha(total, 1.0)
    x = torch.randn(2, 16, 4, 2)
    with torch.no_grad():
        bias = mean.out.bias[None, :, None, None]
        # o is 8 times larger with the sum; the output projection is linear (plus its bias)
        torch.testing.assert_close(total(x) - x - bias, 8 * (mean(x) - x - bias))
    # no effect with softmax scores
    soft_a, soft_b = SelfAttention(16), SelfAttention(16, sigmoid_mean=False)
    soft_b.load_state_dict(soft_a.state_dict())
    _set_alpha(soft_a, 1.0)
    _set_alpha(soft_b, 1.0)
    torch.testing.assert_close(soft_a(x), soft_b(x))
