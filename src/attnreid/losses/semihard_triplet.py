"""CCAN's semi-hard triplet loss (Zhou et al., IVC 2020, section 3.3, eq. 5).

Mining: for an anchor ``a`` and a positive ``p`` (same identity, ``p != a``), the negatives
``n`` (other identities) with ``d(a, p) < d(a, n)`` are "semi-hard"; the ``r`` nearest of them
(smallest ``d(a, n)``, ties by batch index) form the triplets ``(a, p, n)``; ``r = 10`` in the
paper. Triplets are mined on *detached* distances, as in the public code of the same authors
(BAT-net / Attention-in-Attention ``SemiHardTripLoss``), so mining itself carries no gradient.
The loss averages over all mined triplets ``P``:

    L = 1/|P| sum_(a,p,n) [ d(a, p) - d(a, n) + tau ]_+ ,   d = ||x_a - x_b||^2     (eq. 5)

Options where the paper and the public code differ or the paper is unclear (paper by default):

* ``per="pair"``: up to ``r`` negatives per anchor-positive pair, as the paper writes ("given
  the anchor and its positive example, we obtain the top r semi-hard negative triplets");
  ``per="anchor"`` is the public code: up to ``r`` (positive, negative) pairs per anchor,
  ordered by the negative's distance, then the positive's batch index.
* ``squared=True``: eq. 5's squared euclidean distances; ``False`` uses the plain euclidean
  distance of the public code's ``nn.TripletMarginLoss(p=2)``. The mining is the same either
  way (the square is monotonic).
* ``within_margin=False``: the printed mining rule is garbled (``argmin_{D_a^j < D_a^i}``, with
  ``i`` undefined); we read it, with the public code, as "the r nearest negatives farther than
  the positive", with no upper bound. ``True`` adds the upper bound of FaceNet's semi-hard
  negatives (the paper's ref. [48]), ``d(a, n) < d(a, p) + tau`` in the loss's distance, so
  negatives already beyond the margin (zero loss) neither take one of the ``r`` places nor
  enter the mean of eq. 5. The negatives inside the band are a prefix of the nearest-first
  order, so both modes pick the same triplets with a non-zero loss; only ``|P|`` differs.

``margin`` is ``tau`` (1 for Market-1501 / DukeMTMC-reID, 1.5 for CUHK03). A batch without any
semi-hard triplet gives a zero loss that keeps the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnreid.errors import ConfigError
from attnreid.losses.composite import register_loss
from attnreid.utils.checks import one_of, positive_int
from attnreid.utils.distance import pairwise_distance

MINING_MODES = ("pair", "anchor")


@torch.no_grad()
def mine_semihard_triplets(
    dist: Tensor,
    labels: Tensor,
    num_negatives: int = 10,
    per: str = "pair",
    margin: float | None = None,
) -> Tensor:
    """``(T, 3)`` long tensor of ``(anchor, positive, negative)`` batch indices.

    ``dist``: ``(N, N)`` distances (any monotonic form; with ``margin``, the loss's distance);
    ``labels``: ``(N,)``. ``margin``: also require ``d(a, n) < d(a, p) + margin``. Rows are
    sorted by anchor, then (``per="pair"``) positive and negative rank, or (``per="anchor"``)
    negative rank and positive.
    """
    one_of(per, MINING_MODES, "semi-hard mining per")
    n = labels.shape[0]
    dist = dist.detach()
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(n, dtype=torch.bool, device=labels.device)
    pos = same & ~eye  # (a, p)
    neg = ~same  # (a, n)
    # negatives of each anchor in ascending distance (non-negatives last), stable in the index
    order = torch.sort(dist.masked_fill(~neg, float("inf")), dim=1, stable=True).indices
    d_an = torch.gather(dist, 1, order)  # (a, j): distance to the j-th nearest candidate
    is_neg = torch.gather(neg, 1, order)  # (a, j)
    # valid[a, p, j]: (a, p) is a positive pair and the j-th candidate is a farther negative
    valid = pos[:, :, None] & is_neg[:, None, :] & (dist[:, :, None] < d_an[:, None, :])
    if margin is not None:
        valid &= d_an[:, None, :] < dist[:, :, None] + margin
    if per == "pair":
        keep = valid & (valid.cumsum(dim=2) <= num_negatives)
        a, p, j = keep.nonzero(as_tuple=True)
    else:
        by_rank = valid.transpose(1, 2).reshape(n, n * n)  # (a, j * N + p)
        keep = by_rank & (by_rank.cumsum(dim=1) <= num_negatives)
        a, flat = keep.nonzero(as_tuple=True)
        j, p = flat // n, flat % n
    return torch.stack([a, p, order[a, j]], dim=1)


class SemiHardTripletLoss(nn.Module):
    """Eq. 5 over the semi-hard triplets of :func:`mine_semihard_triplets`."""

    def __init__(
        self,
        margin: float = 1.0,
        num_negatives: int = 10,
        per: str = "pair",
        squared: bool = True,
        normalize: bool = False,
        within_margin: bool = False,
    ) -> None:
        super().__init__()
        if margin < 0:
            raise ConfigError(f"semihard_triplet margin must be >= 0, got {margin}")
        positive_int(num_negatives, "semihard_triplet num_negatives")
        one_of(per, MINING_MODES, "semihard_triplet per")
        self.margin, self.num_negatives, self.per = float(margin), num_negatives, per
        self.squared, self.normalize, self.within_margin = squared, normalize, within_margin

    def forward(self, feats: Tensor, labels: Tensor) -> Tensor:
        # feats: (N, D), labels: (N,)
        feats = feats.float()
        if self.normalize:
            feats = F.normalize(feats, dim=1)
        with torch.no_grad():
            dist = pairwise_distance(feats, squared=True)  # (N, N)
            if not self.squared:
                dist = dist.sqrt()
        band = self.margin if self.within_margin else None
        triplets = mine_semihard_triplets(dist, labels, self.num_negatives, self.per, band)
        if triplets.numel() == 0:
            return feats.sum() * 0.0
        anchor, positive, negative = (feats[triplets[:, i]] for i in range(3))
        d_ap = (anchor - positive).pow(2).sum(1)  # (T,)
        d_an = (anchor - negative).pow(2).sum(1)
        if not self.squared:
            d_ap, d_an = d_ap.clamp_min(1e-12).sqrt(), d_an.clamp_min(1e-12).sqrt()
        return F.relu(d_ap - d_an + self.margin).mean()

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, num_negatives={self.num_negatives}, per={self.per!r}, "
            f"squared={self.squared}, within_margin={self.within_margin}"
        )


register_loss("semihard_triplet", SemiHardTripletLoss, "feat")
