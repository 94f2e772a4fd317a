"""Non-local self-attention (CCAN paper, Fig. 2 and Remark 2), and the pieces CC-Attention shares.

CCAN (Zhou et al., IVC 2020) builds its attention on positional matrices: a feature map
``Q`` of shape ``(M, N, C)`` read as ``q`` in ``R^{MN x C}``. Three non-linear projections to
``K = C / 8`` channels,

    f(q'_i) = phi(q'_i W_f),   g(q_i) = phi(q_i W_g),   h(q_i) = phi(q_i W_h),   phi = ReLU,

give the raw correlation ``A' = g(q) f(q')^T`` (``MN x MN``), which weights the values

    y_i = (1 / MN) sum_j A_ij * phi(h(q_j))                                    (eq. 2)
    z_i = w(y_i) + q_i,   w(y_i) = phi(y_i W_w),  W_w: K -> C                  (eq. 3)

The non-local self-attention of the paper's Fig. 2 is SS-Attention "with the Concat and alpha
block removed" (Remark 2): ``Q' = Q`` and ``A = A'``. With the ``1 / MN`` normalisation of eq. 2
this is the *dot-product* form of Wang et al.'s non-local block (CVPR 2018: ``f(x_i, x_j) =
theta(x_i)^T phi(x_j)``, ``C(x) = N``), which is why the dot product, not a softmax, is used.

Projections (option ``batch_norm``): the paper defines every projection as ``phi(q W)``, a
bias-free linear map per position followed by the ReLU, which is a 1x1 convolution + ReLU here
(``batch_norm=False``, the default: the paper's formula wins). ``batch_norm=True`` inserts a
BatchNorm between the convolution and the ReLU, as in the same authors' public code for
BAT-net / Attention-in-Attention (``ConvBlock`` = conv + BN + ReLU for ``f, g, h`` and for the
output map ``W``); it keeps the scale of ``A'`` (a sum over ``K`` products) and of the residual
branch ``w(y)`` bounded when the module is inserted into a pretrained network.

The attention arithmetic (``A'``, ``alpha``, eq. 2) runs in float32 even under mixed precision:
``A'`` sums ``K`` products and overflows float16 easily.

Shapes: input ``(B, C, M, N)``; ``A`` is ``(B, MN, MN)`` (row ``i`` = the position being
updated, column ``j`` = the position attended to, both in row-major ``m * N + n`` order);
output ``(B, C, M, N)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnreid.errors import ModelError


def projection(in_channels: int, out_channels: int, batch_norm: bool = False) -> nn.Sequential:
    """``phi(x W)`` over a feature map: bias-free 1x1 conv, (BatchNorm,) ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _flatten(x: Tensor) -> Tensor:
    # (B, K, M, N) -> (B, MN, K)
    return x.flatten(2).transpose(1, 2)


class PairwiseAttention(nn.Module):
    """The projections ``f, g, h, w`` and the two steps every variant shares.

    ``correlation(q, q')`` returns ``A' = g(q) f(q')^T``; ``aggregate(q, A)`` applies eqs. 2-3.
    """

    def __init__(self, channels: int, reduction: int = 8, batch_norm: bool = False) -> None:
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ModelError(
                f"attention: channels and reduction must be positive, got {channels}, {reduction}"
            )
        self.channels = channels
        self.inner_channels = max(1, channels // reduction)  # K = C / 8
        self.batch_norm = batch_norm
        self.f = projection(channels, self.inner_channels, batch_norm)
        self.g = projection(channels, self.inner_channels, batch_norm)
        self.h = projection(channels, self.inner_channels, batch_norm)
        self.w = projection(self.inner_channels, channels, batch_norm)

    def _check_channels(self, x: Tensor, what: str) -> None:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ModelError(
                f"{type(self).__name__}: {what} must be (B, {self.channels}, M, N), "
                f"got {tuple(x.shape)}"
            )

    def correlation(self, q: Tensor, q_prime: Tensor) -> Tensor:
        """``A' = g(q) f(q')^T``: (B, C, M, N) x 2 -> (B, MN, MN), float32."""
        g = _flatten(self.g(q)).float()  # (B, MN, K)
        f = _flatten(self.f(q_prime)).float()  # (B, MN, K)
        with torch.autocast(device_type=q.device.type, enabled=False):
            return torch.bmm(g, f.transpose(1, 2))  # (B, MN, MN)

    def aggregate(self, q: Tensor, attention: Tensor) -> Tensor:
        """Eqs. 2-3: ``z = w(A phi(h(q)) / MN) + q``; (B, C, M, N), (B, MN, MN) -> (B, C, M, N)."""
        b, _, m, n = q.shape
        values = _flatten(self.h(q)).float()  # (B, MN, K); h already ends with phi
        with torch.autocast(device_type=q.device.type, enabled=False):
            y = torch.bmm(attention.float(), values) / (m * n)  # (B, MN, K)
        y = y.transpose(1, 2).reshape(b, self.inner_channels, m, n).to(q.dtype)
        return self.w(y) + q  # (B, C, M, N)


class NonLocalSelfAttention(PairwiseAttention):
    """Non-local self-attention (Fig. 2): ``A = g(q) f(q)^T``, then eqs. 2-3.

    Not tied to the feature-map size. ``forward(x, return_attention=True)`` also returns ``A``.
    """

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        # x: (B, C, M, N)
        self._check_channels(x, "input")
        attention = self.correlation(x, x)  # (B, MN, MN)
        z = self.aggregate(x, attention)  # (B, C, M, N)
        return (z, attention) if return_attention else z

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, inner_channels={self.inner_channels}, "
            f"batch_norm={self.batch_norm}"
        )
