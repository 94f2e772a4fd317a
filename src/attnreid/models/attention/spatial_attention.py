"""The "spatial attention" SA-ResNet is compared against (Li, Jiang, Hwang 2019, Sec. 4.3).

The paper describes it in one sentence: it "performs a one-dimensional ... convolution of each
feature map to obtain the corresponding expression value, and each function value is
transferred into a vector, which is substituted into the softmax function to obtain the weight
value of each feature map. Finally, we fuse multiple feature maps with the last feature map
... based on the weight value", citing the spatial attention of HA-CNN (Li, Zhu, Gong 2018).
Our reading, on a ``(B, D, h, w)`` map with ``L = h * w`` positions:

* a 1x1 convolution ``D -> 1`` gives one value per position: ``a = w^T x_i + b``, ``(B, 1, h, w)``;
* the ``L`` values, as a vector, go through a softmax over positions: ``s = softmax(a)``,
  ``(B, L)``, summing to 1 (``scores="sigmoid"`` uses HA-CNN's element-wise sigmoid instead);
* the map re-weighted by ``s`` is fused with the map by the same gated residual as the
  self-attention block (eq. 6): ``y = x + alpha * (m * x)`` with ``m = L * s`` for softmax
  (mean 1, so uniform weights reproduce ``x``) or ``m = s`` for sigmoid, and ``alpha`` a learned
  scalar initialised to 0.

The paper gives no fusion formula; using eq. 6's gate makes the two Table 3 variants differ only
in how they attend (one weight per position here, a weight per pair of positions there), and
both start as the identity on the pretrained backbone.

Shapes: input and output ``(B, D, h, w)``; :meth:`SpatialAttention.mask` ``(B, h, w)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnreid.errors import ModelError


class SpatialAttention(nn.Module):
    """One weight per position: ``(B, D, h, w) -> (B, D, h, w)``, ``y = x + alpha * m * x``."""

    def __init__(self, in_channels: int, *, scores: str = "softmax") -> None:
        super().__init__()
        if scores not in ("softmax", "sigmoid"):
            raise ModelError(
                f"spatial attention: scores must be softmax or sigmoid, got {scores!r}"
            )
        self.scores = scores
        self.score = nn.Conv2d(in_channels, 1, 1)
        self.alpha = nn.Parameter(torch.zeros(()))

    def mask(self, x: Tensor) -> Tensor:
        """The attention weights ``s``: ``(B, D, h, w) -> (B, h, w)`` (softmax: sums to 1)."""
        b, _, hh, ww = x.shape
        logits = self.score(x).flatten(1)  # (B, L)
        s = logits.softmax(dim=1) if self.scores == "softmax" else torch.sigmoid(logits)
        return s.reshape(b, hh, ww)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, D, h, w)
        s = self.mask(x)  # (B, h, w)
        m = s * (s.shape[1] * s.shape[2]) if self.scores == "softmax" else s
        return x + self.alpha * (m.unsqueeze(1) * x)  # (B, D, h, w)

    def extra_repr(self) -> str:
        return f"scores={self.scores!r}"
