"""Cross-entropy with label smoothing (Szegedy et al. 2016), as used by all four papers'
re-ID heads: the target is ``(1 - eps) * one_hot + eps / C``.

torch's ``F.cross_entropy(label_smoothing=eps)`` computes exactly this (``eps / C`` on every
class, the true class included), so we use it rather than writing the sum by hand.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from attnreid.errors import ConfigError


class CrossEntropyLabelSmooth(nn.Module):
    """Label-smoothed cross-entropy; ``epsilon=0`` is plain cross-entropy."""

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ConfigError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = epsilon

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        # logits: (N, C), labels: (N,)
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.epsilon)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"
