"""The SONA module: fused vs literal, an independent conv-based reference, maps, options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnreid.errors import ModelError
from attnreid.models.attention.sona import SONA, attention_map, literal_attention


def _pair(channels: int, reduction: int = 2, dtype: torch.dtype = torch.float64):
    """A fused and a literal SONA with the same random weights (p not zeroed, so that every
    parameter gets a gradient)."""
    torch.manual_seed(0)
    fused = SONA(channels, reduction, impl="fused", zero_init=False).to(dtype)
    literal = SONA(channels, reduction, impl="literal", zero_init=False).to(dtype)
    literal.load_state_dict(fused.state_dict())
    return fused, literal


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(("channels", "size"), [(16, (6, 4)), (33, (5, 3)), (64, (12, 8))])
def test_fused_equals_literal_forward_and_backward(channels, size, training):
    # float64: the two paths sum in different orders; in float64 they agree to ~1e-12, so the
    # 1e-5 tolerance of the issue tests the algebra (centring identity), not rounding.
    fused, literal = _pair(channels)
    fused.train(training)
    literal.train(training)
    x = torch.randn(2, channels, *size, dtype=torch.float64, requires_grad=True)
    y_f, y_l = fused(x), literal(x)
    assert y_f.shape == x.shape
    torch.testing.assert_close(y_f, y_l, atol=1e-5, rtol=0)
    upstream = torch.randn_like(y_f)
    grads_f = torch.autograd.grad((y_f * upstream).sum(), [x, *fused.parameters()])
    grads_l = torch.autograd.grad((y_l * upstream).sum(), [x, *literal.parameters()])
    for g_f, g_l in zip(grads_f, grads_l, strict=True):
        assert g_f.abs().sum() > 0  # every parameter takes part
        torch.testing.assert_close(g_f, g_l, atol=1e-5, rtol=0)


def test_fused_equals_literal_in_float32():
    # float32, as trained: forward and every gradient agree to 1e-5 (absolute or relative)
    fused, literal = _pair(64, dtype=torch.float32)
    x = torch.randn(2, 64, 12, 8, requires_grad=True)
    y_f, y_l = fused(x), literal(x)
    torch.testing.assert_close(y_f, y_l, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(y_f)
    grads_f = torch.autograd.grad((y_f * upstream).sum(), [x, *fused.parameters()])
    grads_l = torch.autograd.grad((y_l * upstream).sum(), [x, *literal.parameters()])
    for g_f, g_l in zip(grads_f, grads_l, strict=True):
        torch.testing.assert_close(g_f, g_l, atol=1e-5, rtol=1e-5)


def _reference(module: SONA, x: torch.Tensor) -> torch.Tensor:
    """Equations 1-3 written independently of the module: 1x1 convs with F.conv2d, the
    BatchNorm as BatchNorm2d would compute it, Ibar as a matrix, an explicit softmax."""
    b, _, h, w = x.shape
    lin, bn, act = module.theta
    d = lin.weight.shape[0]
    theta = F.conv2d(x, lin.weight[:, :, None, None])
    theta = F.batch_norm(theta, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
    theta = F.leaky_relu(theta, act.negative_slope).reshape(b, d, h * w).transpose(1, 2)
    g = F.conv2d(x, module.g.weight[:, :, None, None], module.g.bias)
    g = g.reshape(b, d, h * w).transpose(1, 2)
    ibar = (torch.eye(d, dtype=x.dtype) - torch.full((d, d), 1.0 / d, dtype=x.dtype)) / d
    sigma = theta @ ibar @ theta.transpose(1, 2)  # (B, hw, hw)
    z = torch.softmax(sigma / d**0.5, dim=-1) @ g  # (B, hw, d)
    z = z.transpose(1, 2).reshape(b, d, h, w)
    return x + F.conv2d(z, module.p.weight[:, :, None, None], module.p.bias)


@pytest.mark.parametrize("impl", ["fused", "literal"])
def test_matches_an_independent_reference(impl):
    fused, literal = _pair(24)
    module = fused if impl == "fused" else literal
    module.train()  # batch statistics, as the reference
    x = torch.randn(3, 24, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(module(x), _reference(module, x), atol=1e-10, rtol=0)


def test_centring_identity():
    theta = torch.randn(2, 10, 6, dtype=torch.float64)
    d = theta.shape[-1]
    centred = theta - theta.mean(-1, keepdim=True)
    expected = torch.softmax(centred @ centred.transpose(1, 2) * d**-1.5, dim=-1)
    torch.testing.assert_close(literal_attention(theta), expected)
    # invariant to a per-position shift of theta, which the centring removes
    shifted = theta + torch.randn(2, 10, 1, dtype=torch.float64)
    torch.testing.assert_close(literal_attention(shifted), expected)


def test_zero_init_starts_as_identity_and_default_init_does_not():
    x = torch.randn(2, 16, 5, 4)
    assert torch.equal(SONA(16).eval()(x), x)
    assert not torch.allclose(SONA(16, zero_init=False).eval()(x), x)


def test_shapes_and_reduction():
    module = SONA(10, reduction=4)
    assert module.inner == 2
    assert module.theta[0].weight.shape == (2, 10) and module.p.weight.shape == (10, 2)
    assert SONA(3, reduction=8).inner == 1
    x = torch.randn(2, 10, 3, 7)
    assert module(x).shape == x.shape


def test_attention_matrix_and_maps():
    module = SONA(8, zero_init=False).eval()
    x = torch.randn(2, 8, 4, 3)
    attn = module.attention(x)
    assert attn.shape == (2, 12, 12)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 12))
    mean_map = attention_map(attn, 4, 3)
    assert mean_map.shape == (2, 4, 3)
    torch.testing.assert_close(mean_map.sum((1, 2)), torch.ones(2))  # rows sum to 1
    # query (y, x) = (0.6, 0.9) -> row 2 of 4, column 2 of 3 -> position 2 * 3 + 2
    query_map = attention_map(attn, 4, 3, (0.6, 0.9))
    torch.testing.assert_close(query_map, attn[:, 8].reshape(2, 4, 3))
    torch.testing.assert_close(attention_map(attn, 4, 3, (1.0, 1.0)), attn[:, 11].reshape(2, 4, 3))
    with pytest.raises(ModelError, match="query_point"):
        attention_map(attn, 4, 3, (1.5, 0.0))
    with pytest.raises(ValueError, match="does not fit"):
        attention_map(attn, 3, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": 0}, "channels"),
        ({"channels": 8, "reduction": 0}, "reduction"),
        ({"channels": 8, "reduction": True}, "reduction"),
        ({"channels": 8, "impl": "flash"}, "impl"),
        ({"channels": 8, "negative_slope": "0.1"}, "negative_slope"),
    ],
)
def test_option_errors(kwargs, match):
    with pytest.raises(ModelError, match=match):
        SONA(**kwargs)
