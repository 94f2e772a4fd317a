"""Cross-Correlated Attention (CC-Attention, CCA) and Symmetric Self-Attention (SS-Attention, SSA).

CCAN (Zhou, Roy, Fang, Harandi, Petersson; Image and Vision Computing 2020), section 3.1. Two
feature maps ``Q, Q'`` of shape ``(M, N, C)`` are read as positional matrices
``q, q'`` in ``R^{MN x C}``; with ``f, g, h, w`` as in
:mod:`attnreid.models.attention.nonlocal_attention` (1x1 conv + BN + ReLU, ``K = C / 8``):

    A' = g(q) f(q')^T                                   (MN x MN)
    A  = phi([A', A'^T] W_alpha),   W_alpha: 2MN -> MN   (eq. 1; concatenation along the width)
    y_i = (1 / MN) sum_j A_ij * phi(h(q_j))              (eq. 2)
    z_i = phi(y_i W_w) + q_i                              (eq. 3)

``A_ij`` relates position ``i`` of ``q`` to position ``j`` of ``q'``; the ``[A', A'^T]``
concatenation makes the map see the correlation in both directions (Remark 1). Swapping ``q``
and ``q'`` transposes ``A'``. SS-Attention is the same module with ``Q' = Q`` (Remark 2).
As eq. 2 is printed, the values ``h(q_j)`` and the residual of eq. 3 both come from ``q`` ("y
for input q"); ``q'`` only enters through ``f`` in the correlation. This is followed literally.

``W_alpha`` maps ``2MN`` to ``MN``, so the module is tied to the ``M x N`` map it was built
for: it takes ``map_size=(M, N)`` at construction and raises :class:`~attnreid.errors.ModelError`
when a map of another size arrives (a model built for 256x128 images cannot run 384x128 ones).

Choices where the paper is silent (options):

* ``alpha_init="identity"`` (default): ``W_alpha = [I/2; I/2]`` and zero bias, so that at
  initialisation ``A = phi((A' + A'^T) / 2)``, the symmetric cross-correlation itself; the
  layer then learns to mix positions. ``"random"`` keeps PyTorch's default ``nn.Linear``
  initialisation, which mixes unrelated positions from the first step.
* ``alpha`` is a linear layer *with* a bias (the paper calls it "a linear layer with weight
  W_alpha").
* ``batch_norm`` (default ``False``): the projections ``f, g, h, w`` are the paper's
  ``phi(q W)`` (1x1 conv + ReLU); ``True`` adds the public code's BatchNorm (see
  ``nonlocal_attention``).

Shapes: ``q, q'``: ``(B, C, M, N)``; ``A``: ``(B, MN, MN)``; output: ``(B, C, M, N)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.models.attention.nonlocal_attention import PairwiseAttention
from attnreid.utils.checks import one_of

ALPHA_INITS = ("identity", "random")


class CrossCorrelatedAttention(PairwiseAttention):
    """CC-Attention between two ``(B, C, M, N)`` maps of the size given at construction.

    ``forward(q, q_prime)`` returns ``z`` (``q``'s shape); ``q_prime=None`` means ``Q' = Q``
    (SS-Attention); ``return_attention=True`` also returns ``A`` ``(B, MN, MN)``.
    """

    def __init__(
        self,
        channels: int,
        map_size: Sequence[int],
        reduction: int = 8,
        alpha_init: str = "identity",
        batch_norm: bool = False,
    ) -> None:
        super().__init__(channels, reduction, batch_norm)
        if len(map_size) != 2 or min(int(s) for s in map_size) < 1:
            raise ModelError(f"{type(self).__name__}: map_size must be (M, N), got {map_size!r}")
        one_of(alpha_init, ALPHA_INITS, f"{type(self).__name__}: alpha_init", ModelError)
        self.map_size: tuple[int, int] = (int(map_size[0]), int(map_size[1]))
        positions = self.map_size[0] * self.map_size[1]
        self.alpha = nn.Linear(2 * positions, positions)  # W_alpha: 2MN -> MN
        self.alpha_init = alpha_init
        if alpha_init == "identity":
            with torch.no_grad():
                eye = torch.eye(positions) / 2
                self.alpha.weight.copy_(torch.cat([eye, eye], dim=1))  # (MN, 2MN)
                self.alpha.bias.zero_()

    def _check_size(self, x: Tensor, what: str) -> None:
        self._check_channels(x, what)
        if tuple(x.shape[-2:]) != self.map_size:
            m, n = self.map_size
            raise ModelError(
                f"{type(self).__name__} was built for {m}x{n} feature maps but {what} is "
                f"{x.shape[-2]}x{x.shape[-1]}: W_alpha is tied to the map size, so the image "
                "size must equal the model's input_size option (data.height / data.width)"
            )

    def cross_correlation(self, q: Tensor, q_prime: Tensor) -> Tensor:
        """Eq. 1: ``A = phi([A', A'^T] W_alpha)``; (B, C, M, N) x 2 -> (B, MN, MN), float32."""
        raw = self.correlation(q, q_prime)  # A': (B, MN, MN)
        both = torch.cat([raw, raw.transpose(1, 2)], dim=2)  # (B, MN, 2MN)
        with torch.autocast(device_type=q.device.type, enabled=False):
            return F.relu(F.linear(both, self.alpha.weight.float(), self.alpha.bias.float()))

    def forward(
        self, q: Tensor, q_prime: Tensor | None = None, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        # q, q_prime: (B, C, M, N)
        self._check_size(q, "q")
        if q_prime is None:
            q_prime = q
        else:
            self._check_size(q_prime, "q'")
            if q_prime.shape[0] != q.shape[0]:
                raise ModelError(
                    f"{type(self).__name__}: q and q' have batch sizes {q.shape[0]} and "
                    f"{q_prime.shape[0]}"
                )
        attention = self.cross_correlation(q, q_prime)  # A: (B, MN, MN)
        z = self.aggregate(q, attention)  # (B, C, M, N)
        return (z, attention) if return_attention else z

    def extra_repr(self) -> str:
        m, n = self.map_size
        return (
            f"channels={self.channels}, inner_channels={self.inner_channels}, "
            f"map_size=({m}, {n}), alpha_init={self.alpha_init!r}, batch_norm={self.batch_norm}"
        )


class SymmetricSelfAttention(CrossCorrelatedAttention):
    """SS-Attention: CC-Attention of a map with itself (``Q' = Q``), CCAN's ``SS_1^G``."""

    def forward(  # type: ignore[override]
        self, x: Tensor, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        # x: (B, C, M, N)
        return super().forward(x, None, return_attention)
