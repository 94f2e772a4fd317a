"""Batch-hard triplet loss (Hermans, Beyer, Leibe 2017, "In Defense of the Triplet Loss").

For each anchor in a P x K batch, the hardest positive (largest distance, same identity) and
the hardest negative (smallest distance, other identity) are mined on the fly:

    hard margin:  L = mean_a max(0, m + d(a, p*) - d(a, n*))
    soft margin:  L = mean_a log(1 + exp(d(a, p*) - d(a, n*)))          (margin = None)

``d`` is the euclidean distance (not squared), as in the paper and in torchreid / fast-reid;
``cosine`` uses 1 - cosine similarity. Anchors without a positive or a negative in the batch
are left out of the mean (a warning-free no-op when the batch has a single identity).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnreid.errors import ConfigError
from attnreid.utils.checks import one_of
from attnreid.utils.distance import DISTANCE_METRICS, pairwise_distance


def hard_example_mining(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hardest positive and negative distance per anchor, and a mask of usable anchors."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = same & ~eye
    neg = ~same
    big = torch.finfo(dist.dtype).max
    d_ap = dist.masked_fill(~pos, float("-inf")).amax(1)
    d_an = dist.masked_fill(~neg, big).amin(1)
    valid = pos.any(1) & neg.any(1)
    return d_ap, d_an, valid


def check_margin(margin: float | None, what: str) -> float | None:
    if margin is not None and margin < 0:
        raise ConfigError(f"{what} margin must be >= 0 or null (soft margin), got {margin}")
    return margin


def batch_hard_triplet(dist: Tensor, labels: Tensor, margin: float | None) -> Tensor:
    """Mean batch-hard triplet loss of a ``(N, N)`` distance matrix; soft when ``margin=None``."""
    d_ap, d_an, valid = hard_example_mining(dist.float(), labels)
    if not valid.any():
        return dist.sum() * 0.0
    gap = d_ap[valid] - d_an[valid]
    return F.softplus(gap).mean() if margin is None else F.relu(gap + margin).mean()


class TripletLoss(nn.Module):
    """Batch-hard triplet loss with a hard (``margin`` > 0) or soft (``margin=None``) margin."""

    def __init__(
        self, margin: float | None = 0.3, metric: str = "euclidean", normalize: bool = False
    ) -> None:
        super().__init__()
        self.margin, self.normalize = check_margin(margin, "triplet"), normalize
        self.metric = one_of(metric, DISTANCE_METRICS, "triplet metric")

    def forward(self, feats: Tensor, labels: Tensor) -> Tensor:
        # feats: (N, D), labels: (N,)
        if self.normalize:
            feats = F.normalize(feats, dim=1)
        dist = pairwise_distance(feats.float(), self.metric)  # (N, N)
        return batch_hard_triplet(dist, labels, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, metric={self.metric!r}"
