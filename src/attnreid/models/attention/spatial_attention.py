"""The "spatial attention" SA-ResNet is compared against (Li, Jiang, Hwang 2019, Sec. 4.3).

The paper describes it in one sentence: it "directly performs on a one-dimensional time-series
convolution of each feature map to obtain the corresponding expression value, and each function
value is transferred into a vector, which is substituted into the softmax function to obtain
the weight value of each feature map. Finally, we fuse multiple feature maps with the last
feature map for training based on the weight value", citing HA-CNN (Li, Zhu, Gong 2018). The
paper calls each ``D``-dimensional cell of the ``8 x 4`` map a "feature map" (Sec. 3.1: "each
feature map is a D = 2048 dimensional vector"), so on a ``(B, D, h, w)`` map with
``L = h * w`` positions, step by step:

* "a one-dimensional time-series convolution of each feature map [gives] the corresponding
  expression value": the ``L`` cells, in row-major order, are a sequence of ``D``-channel
  vectors and a ``Conv1d(D, 1, kernel_size)`` along it gives one value per cell,
  ``a_i = sum_t w_t^T x_{i+t} + b``, ``(B, L)``. The kernel size is not given:
  ``kernel_size=1`` (default) scores each cell from its own vector only (a 1x1 convolution);
  an odd ``kernel_size > 1`` (zero padding, length kept) also uses its neighbours in the
  sequence (the horizontal neighbours, wrapping from the end of one row to the next);
* "transferred into a vector ... substituted into the softmax function": ``s = softmax(a)``
  over the ``L`` positions, summing to 1 (``scores="sigmoid"``: HA-CNN's element-wise sigmoid);
* "fuse multiple feature maps with the last feature map ... based on the weight value": the
  cells re-weighted by ``m = L * s`` (softmax; mean weight 1) or ``m = s`` (sigmoid) are added
  to the map, ``y = x + m * x``. After the global average pooling of SA-ResNet this is
  ``mean_i x_i + sum_i s_i x_i``: the attention-weighted sum of the cells (the other reading
  of "fuse multiple feature maps ... based on the weight value") added to the plain average,
  so both readings give the same test feature.

The paper gives this variant no learned scalar: ``gate=False`` (default) is the description
above. ``gate=True`` adds eq. 6's gate of the self-attention block, ``y = x + alpha * m * x``
with ``alpha`` learned and initialised to 0, so that the two Table 3 variants differ only in
how they attend and both start as the identity on the pretrained backbone.

Shapes: input and output ``(B, D, h, w)``; :meth:`SpatialAttention.mask` ``(B, h, w)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.utils.checks import one_of


class SpatialAttention(nn.Module):
    """One weight per position: ``(B, D, h, w) -> (B, D, h, w)``, ``y = x + m * x``.

    Args:
        in_channels: ``D``.
        scores: ``"softmax"`` over the positions (the paper's) or ``"sigmoid"``.
        kernel_size: odd length of the 1-D convolution along the row-major positions.
        gate: multiply the fused term by a learned scalar ``alpha`` initialised to 0.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        scores: str = "softmax",
        kernel_size: int = 1,
        gate: bool = False,
    ) -> None:
        super().__init__()
        one_of(scores, ("softmax", "sigmoid"), "spatial attention: scores", ModelError)
        if (
            isinstance(kernel_size, bool)
            or not isinstance(kernel_size, int)
            or kernel_size < 1
            or kernel_size % 2 == 0
        ):
            raise ModelError(
                f"spatial attention: kernel_size must be a positive odd integer, "
                f"got {kernel_size!r}"
            )
        self.scores, self.gate = scores, gate
        self.score = nn.Conv1d(in_channels, 1, kernel_size, padding=kernel_size // 2)
        if gate:
            self.alpha = nn.Parameter(torch.zeros(()))

    def mask(self, x: Tensor) -> Tensor:
        """The attention weights ``s``: ``(B, D, h, w) -> (B, h, w)`` (softmax: sums to 1)."""
        b, _, hh, ww = x.shape
        logits = self.score(x.flatten(2)).flatten(1)  # (B, D, L) -> (B, 1, L) -> (B, L)
        s = logits.softmax(dim=1) if self.scores == "softmax" else torch.sigmoid(logits)
        return s.reshape(b, hh, ww)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, D, h, w)
        s = self.mask(x)  # (B, h, w)
        m = s * (s.shape[1] * s.shape[2]) if self.scores == "softmax" else s
        fused = m.unsqueeze(1) * x  # (B, D, h, w)
        return x + self.alpha * fused if self.gate else x + fused

    def extra_repr(self) -> str:
        return f"scores={self.scores!r}, kernel_size={self.score.kernel_size[0]}, gate={self.gate}"
