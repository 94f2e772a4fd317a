"""Second-order Non-local Attention (SONA), Xia et al., ICCV 2019, section 2.2.

For an input map ``x`` of shape ``(B, c, h, w)`` seen as ``hw`` positions of ``c`` features,
with ``d = c / r`` (``r = 2`` in the paper)::

    theta(x) = LeakyReLU(BN(Conv1x1_{c->d}(x)))        (hw, d)
    g(x)     = Conv1x1_{c->d}(x)                        (hw, d)
    Sigma    = theta Ibar theta^T,  Ibar = (1/d) (I - (1/d) 1)           (1)   (hw, hw)
    z        = softmax(Sigma / sqrt(d)) g                                 (2)   (hw, d)
    SONA(x)  = x + p(z),  p = Conv1x1_{d->c}                              (3)   (B, c, h, w)

``1`` is the d x d matrix of ones, so ``Ibar`` centres each position's ``d`` features and
``Sigma = (1/d) theta_c theta_c^T`` with ``theta_c = theta - mean_channels(theta)`` (the
centring matrix ``I - 11^T/d`` of the covariance pooling section 2.2 follows, its ref. [15], is
symmetric and idempotent). Equation (2) is therefore scaled dot-product
attention with query = key = ``theta_c`` and scale ``d^-1/2 * d^-1 = d^-3/2``, which
``impl="fused"`` (the default) computes with
:func:`torch.nn.functional.scaled_dot_product_attention` (a fused kernel that never builds
the ``hw x hw`` matrix on the CPU flash path). ``impl="literal"`` builds ``Ibar``, ``Sigma``
and the softmax exactly as written; it is the reference the tests compare the fused path with,
and :meth:`SONA.attention` uses it to return the attention matrix for visualisation.

Choices where the paper is silent (each an option):

* ``zero_init=True``: ``p`` starts at zero, so the module is the identity when it is inserted
  into an ImageNet-initialised backbone, as the non-local networks the paper builds on do
  (Wang et al. 2018 zero the scale of the BN that ends their block; SONA's ``p`` has no BN, so
  its weight and bias are zeroed). ``zero_init=False`` keeps PyTorch's default conv init.
* The conv of ``theta`` has no bias (a BatchNorm follows it); ``g`` and ``p`` have one.
* ``negative_slope=0.01``: PyTorch's LeakyReLU default; the paper gives no slope.
* ``d = max(1, c // r)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.models.attention.maps import attention_map  # noqa: F401  (re-exported)
from attnreid.utils.checks import one_of, positive_int

IMPLEMENTATIONS = ("fused", "literal")


class SONA(nn.Module):
    """Second-order non-local attention: ``(B, c, h, w) -> (B, c, h, w)``.

    Args:
        channels: ``c``, the input (and output) channels.
        reduction: ``r``; ``theta`` and ``g`` have ``d = c // r`` channels.
        impl: ``"fused"`` (scaled_dot_product_attention on the centred ``theta``) or
            ``"literal"`` (equations 1-2 with an explicit ``Ibar`` and ``hw x hw`` softmax).
        negative_slope: of the LeakyReLU in ``theta``.
        zero_init: zero ``p`` so that the module starts as the identity.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 2,
        *,
        impl: str = "fused",
        negative_slope: float = 0.01,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        positive_int(channels, "SONA: channels", ModelError)
        positive_int(reduction, "SONA: reduction", ModelError)
        one_of(impl, IMPLEMENTATIONS, "SONA: impl", ModelError)
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise ModelError(f"SONA: negative_slope must be a number, got {negative_slope!r}")
        self.channels, self.reduction, self.impl = channels, reduction, impl
        self.inner = d = max(1, channels // reduction)
        # 1x1 convolutions act on each position alone: they are stored as linear maps and
        # applied to the (B, hw, c) view, which gives theta and g directly in the contiguous
        # (B, hw, d) layout the attention kernel wants (no transposed copies).
        self.theta = nn.Sequential(
            nn.Linear(channels, d, bias=False),
            nn.BatchNorm1d(d),
            nn.LeakyReLU(negative_slope),
        )
        self.g = nn.Linear(channels, d)
        self.p = nn.Linear(d, channels)
        if zero_init:
            nn.init.zeros_(self.p.weight)
            nn.init.zeros_(self.p.bias)

    def _theta(self, xt: Tensor) -> Tensor:
        # xt: (B, L, c) -> (B, L, d); BatchNorm over the B * L positions, as BatchNorm2d
        b, n, _ = xt.shape
        lin, bn, act = self.theta
        return act(bn(lin(xt).reshape(b * n, self.inner))).reshape(b, n, self.inner)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, c, h, w)
        b, c, h, w = x.shape
        xf = x.flatten(2)  # (B, c, L), a view
        xt = xf.transpose(1, 2)  # (B, L, c), a view (the matmuls read it transposed)
        theta = self._theta(xt)  # (B, L, d)
        g = self.g(xt)  # (B, L, d)
        z = self._fused(theta, g) if self.impl == "fused" else self._literal(theta, g)
        # p(z) in the (B, c, L) layout of x, plus the residual, in one batched matmul
        base = xf + self.p.bias[:, None]  # (B, c, L)
        out = torch.baddbmm(base, self.p.weight.expand(b, c, self.inner), z.transpose(1, 2))
        return out.view(b, c, h, w)

    def _fused(self, theta: Tensor, g: Tensor) -> Tensor:
        # theta, g: (B, L, d) -> z: (B, L, d)
        d = theta.shape[-1]
        q = (theta - theta.mean(dim=-1, keepdim=True)).unsqueeze(1)  # (B, 1, L, d), centred
        z = F.scaled_dot_product_attention(q, q, g.unsqueeze(1), scale=d**-1.5)
        return z.squeeze(1)

    def _literal(self, theta: Tensor, g: Tensor) -> Tensor:
        # theta, g: (B, L, d) -> z: (B, L, d)
        return literal_attention(theta) @ g

    @torch.no_grad()
    def attention(self, x: Tensor) -> Tensor:
        """The attention matrix ``softmax(Sigma / sqrt(d))`` of input ``x``: ``(B, hw, hw)``;
        row ``i`` holds the weights position ``i`` gives to every position."""
        # x: (B, c, h, w)
        return literal_attention(self._theta(x.flatten(2).transpose(1, 2)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inner={self.inner}, impl={self.impl!r}"


def literal_attention(theta: Tensor) -> Tensor:
    """Equations (1)-(2) as written: ``softmax(theta Ibar theta^T / sqrt(d))``.

    ``theta``: ``(B, L, d)`` -> ``(B, L, L)``, softmax over the last dimension.
    """
    d = theta.shape[-1]
    eye = torch.eye(d, dtype=theta.dtype, device=theta.device)
    ibar = (eye - torch.ones_like(eye) / d) / d  # (d, d)
    sigma = theta @ ibar @ theta.transpose(1, 2)  # (B, L, L)
    return torch.softmax(sigma / d**0.5, dim=-1)
