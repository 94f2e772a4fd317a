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

METRICS = ("euclidean", "cosine")


def pairwise_distance(x: Tensor, metric: str = "euclidean", *, squared: bool = False) -> Tensor:
    """(N, D) -> (N, N) distances, the one pairwise distance of the triplet losses.

    ``euclidean``: ``||a||^2 + ||b||^2 - 2 a.b``; with ``squared=True`` clamped at 0, else
    clamped at ``1e-12`` before the square root, so the gradient stays finite at zero distance
    (an anchor and itself, or two equal features). ``cosine``: ``1 - cos(a, b)``.
    """
    if one_of(metric, METRICS, "triplet metric") == "cosine":
        xn = F.normalize(x, dim=1)
        return 1.0 - xn @ xn.t()
    sq = (x * x).sum(1, keepdim=True)
    d2 = sq + sq.t() - 2.0 * x @ x.t()
    return d2.clamp_min(0) if squared else d2.clamp_min(1e-12).sqrt()


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


class TripletLoss(nn.Module):
    """Batch-hard triplet loss with a hard (``margin`` > 0) or soft (``margin=None``) margin."""

    def __init__(
        self, margin: float | None = 0.3, metric: str = "euclidean", normalize: bool = False
    ) -> None:
        super().__init__()
        if margin is not None and margin < 0:
            raise ConfigError(f"triplet margin must be >= 0 or null (soft margin), got {margin}")
        one_of(metric, METRICS, "triplet metric")
        self.margin, self.metric, self.normalize = margin, metric, normalize

    def forward(self, feats: Tensor, labels: Tensor) -> Tensor:
        # feats: (N, D), labels: (N,)
        if self.normalize:
            feats = F.normalize(feats, dim=1)
        dist = pairwise_distance(feats.float(), self.metric)
        d_ap, d_an, valid = hard_example_mining(dist, labels)
        if not valid.any():
            return feats.sum() * 0.0
        d_ap, d_an = d_ap[valid], d_an[valid]
        if self.margin is None:
            return F.softplus(d_ap - d_an).mean()
        return F.relu(d_ap - d_an + self.margin).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, metric={self.metric!r}"
