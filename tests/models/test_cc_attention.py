"""CC-Attention, SS-Attention and non-local self-attention (CCAN, eqs. 1-3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnreid.errors import ModelError
from attnreid.models.attention.cc_attention import (
    CrossCorrelatedAttention,
    SymmetricSelfAttention,
)
from attnreid.models.attention.nonlocal_attention import NonLocalSelfAttention

C, M, N = 16, 4, 3


def _pair(seed: int = 0, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, C, M, N, generator=g), torch.randn(batch, C, M, N, generator=g)


def _cca(alpha_init: str = "random", seed: int = 0) -> CrossCorrelatedAttention:
    torch.manual_seed(seed)
    return CrossCorrelatedAttention(C, (M, N), alpha_init=alpha_init).eval()


def _literal(module: CrossCorrelatedAttention, q: torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
    """Eqs. 1-3 written position by position, for one image (q, qp: (C, M, N))."""
    P = M * N
    g = module.g(q[None])[0].reshape(-1, P)  # (K, MN)
    f = module.f(qp[None])[0].reshape(-1, P)
    h = module.h(q[None])[0].reshape(-1, P)
    a_raw = torch.empty(P, P)
    for i in range(P):
        for j in range(P):
            a_raw[i, j] = (g[:, i] * f[:, j]).sum()
    cat = torch.cat([a_raw, a_raw.t()], dim=1)  # concatenation along the width: (MN, 2MN)
    a = F.relu(cat @ module.alpha.weight.t() + module.alpha.bias)  # eq. 1
    y = torch.zeros(h.shape[0], P)
    for i in range(P):
        for j in range(P):
            y[:, i] += a[i, j] * F.relu(h[:, j])
    y /= P  # eq. 2
    return module.w(y.reshape(1, -1, M, N))[0] + q  # eq. 3


def test_cca_shapes_and_gradients() -> None:
    module = CrossCorrelatedAttention(C, (M, N))
    q, qp = _pair()
    q.requires_grad_(True)
    z, attention = module(q, qp, return_attention=True)
    assert z.shape == (2, C, M, N)
    assert attention.shape == (2, M * N, M * N)
    assert module.inner_channels == C // 8
    assert module.alpha.weight.shape == (M * N, 2 * M * N)  # W_alpha: 2MN -> MN
    (z.square().sum() + attention.sum()).backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert q.grad is not None


def test_cca_matches_the_equations_written_out() -> None:
    module = _cca()
    q, qp = _pair(1, batch=1)
    with torch.no_grad():
        z = module(q, qp)
        ref = _literal(module, q[0], qp[0])
    torch.testing.assert_close(z[0], ref, rtol=1e-4, atol=1e-4)


def _swap_fg(key: str) -> str:
    if key.startswith("f."):
        return "g." + key[2:]
    if key.startswith("g."):
        return "f." + key[2:]
    return key


def test_swapping_inputs_transposes_the_correlation() -> None:
    """A' = g(q) f(q')^T: swapping q and q' (and the roles of f and g) transposes A'."""
    module = _cca()
    swapped = _cca(seed=1)
    swapped.load_state_dict({_swap_fg(k): v for k, v in module.state_dict().items()})
    q, qp = _pair(2)
    with torch.no_grad():
        forward = module.correlation(q, qp)
        backward = swapped.correlation(qp, q)
    torch.testing.assert_close(backward, forward.transpose(1, 2))
    # eq. 1 sees both directions: with W_alpha's halves swapped too, A itself is unchanged
    half = M * N
    with torch.no_grad():
        swapped.alpha.weight.copy_(
            torch.cat([module.alpha.weight[:, half:], module.alpha.weight[:, :half]], dim=1)
        )
        torch.testing.assert_close(
            swapped.cross_correlation(qp, q), module.cross_correlation(q, qp)
        )
    # with tied projections (f = g) the swap alone transposes A'
    module.f.load_state_dict(module.g.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(
            module.correlation(qp, q), module.correlation(q, qp).transpose(1, 2)
        )


def test_identity_alpha_init_is_the_symmetric_mean() -> None:
    module = _cca("identity")
    q, qp = _pair(3)
    with torch.no_grad():
        raw = module.correlation(q, qp)
        torch.testing.assert_close(
            module.cross_correlation(q, qp), F.relu((raw + raw.transpose(1, 2)) / 2)
        )


def test_ssa_equals_cca_with_equal_inputs() -> None:
    cca = _cca()
    ssa = SymmetricSelfAttention(C, (M, N), alpha_init="random")
    ssa.load_state_dict(cca.state_dict())
    x, _ = _pair(4)
    for mode in (False, True):  # eval (running stats) and train (batch stats)
        cca.train(mode)
        ssa.train(mode)
        with torch.no_grad():
            z_ssa, a_ssa = ssa(x, return_attention=True)
            z_cca, a_cca = cca(x, x, return_attention=True)
            torch.testing.assert_close(z_ssa, z_cca)
            torch.testing.assert_close(a_ssa, a_cca)
            torch.testing.assert_close(cca(x), z_cca)  # q' omitted = Q' = Q


def test_nonlocal_is_ssa_without_concat_and_alpha() -> None:
    cca = _cca()
    nl = NonLocalSelfAttention(C)
    missing = nl.load_state_dict(
        {k: v for k, v in cca.state_dict().items() if not k.startswith("alpha.")}
    )
    assert not missing.missing_keys and not missing.unexpected_keys
    nl.eval()
    x, _ = _pair(5)
    with torch.no_grad():
        z, attention = nl(x, return_attention=True)
        raw = cca.correlation(x, x)
        torch.testing.assert_close(attention, raw)
        torch.testing.assert_close(z, cca.aggregate(x, raw))
        z_other = NonLocalSelfAttention(C)(torch.randn(1, C, 7, 5))  # any map size
    assert z.shape == x.shape and z_other.shape == (1, C, 7, 5)


def test_size_change_raises_a_clear_error() -> None:
    module = CrossCorrelatedAttention(C, (M, N))
    q, qp = _pair()
    with pytest.raises(ModelError, match=r"built for 4x3 feature maps but q is 5x3"):
        module(torch.randn(2, C, M + 1, N), qp)
    with pytest.raises(ModelError, match=r"q' is 4x4"):
        module(q, torch.randn(2, C, M, N + 1))
    with pytest.raises(ModelError, match=r"must be \(B, 16, M, N\)"):
        module(torch.randn(2, C + 1, M, N), qp)
    with pytest.raises(ModelError, match="batch sizes"):
        module(q, qp[:1])
    with pytest.raises(ModelError, match="alpha_init"):
        CrossCorrelatedAttention(C, (M, N), alpha_init="zeros")


@pytest.mark.parametrize("cls", [CrossCorrelatedAttention, SymmetricSelfAttention])
def test_projections_are_the_papers_relu_of_a_linear_map(cls) -> None:
    """f(q'_i) = phi(q'_i W_f), g, h alike, w(y_i) = phi(y_i W_w): no normalisation, no bias."""
    torch.manual_seed(0)
    module = cls(C, (M, N))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())
    q, _ = _pair(6)
    for name in ("f", "g", "h"):
        proj = getattr(module, name)
        weight = proj[0].weight[:, :, 0, 0]  # (K, C)
        assert proj[0].bias is None
        expected = F.relu(torch.einsum("kc,bcmn->bkmn", weight, q))
        torch.testing.assert_close(proj(q), expected)
    y = torch.randn(2, module.inner_channels, M, N)
    expected = F.relu(torch.einsum("ck,bkmn->bcmn", module.w[0].weight[:, :, 0, 0], y))
    torch.testing.assert_close(module.w(y), expected)


def test_batch_norm_option_adds_the_public_codes_normalisation() -> None:
    torch.manual_seed(0)
    module = CrossCorrelatedAttention(C, (M, N), alpha_init="random", batch_norm=True).eval()
    norms = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 4  # f, g, h, w
    for norm in norms:  # non-trivial running statistics, so that BN changes the output
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
    q, qp = _pair(7, batch=1)
    with torch.no_grad():
        z, ref = module(q, qp)[0], _literal(module, q[0], qp[0])
    torch.testing.assert_close(z, ref, rtol=1e-4, atol=1e-4)
    assert "batch_norm=True" in repr(module)
    nl = NonLocalSelfAttention(C, batch_norm=True)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in nl.modules()) == 4
