"""DuATM's training losses (Si et al., CVPR 2018, sec. 3.3): ``l0 + lambda1 l1 + lambda2 l2``.

* ``l0``, eq. 6, :class:`MatchingTripletLoss` (``type: matching_triplet``): the triplet loss
  ``max(0, gamma + ||X_a - X_p||_M - ||X_a - X_n||_M)`` on the distance the model's sequence
  matching computes (margin ``gamma = 0.2``), with batch-hard mining over a P x K batch (every
  sample is an anchor with its hardest positive and negative, Hermans et al. 2017). It reads
  the branch output ``"dist"``, the ``(B, B)`` matrix the model computes with its dual
  attention.
* ``l1``, eq. 7, :class:`DecorrelationLoss` (``type: decorrelation``): ``(1 / N^2)
  ||I - F(X)^T F(X)||_F^2`` per sequence, averaged over the batch. ``F(X)`` is read as the
  ``D x N`` matrix whose columns are the sequence's ``N = S`` vectors ("N is the total number
  of feature vectors in the sequence"), so ``F^T F`` is their ``S x S`` Gram matrix and the
  loss pushes the vectors of one sequence towards orthogonality. The other reading, ``F(X)``
  as the ``S x D`` matrix and ``I`` of size ``D``, trains identically: for unit-norm vectors
  (sec. 3.1) ``||I_D - X^T X||_F^2 = ||I_S - X X^T||_F^2 + D - S``, a constant apart (both
  divided by ``N^2 = S^2``), so no option is needed. Reads ``"seq"`` ``(B, S, D)``.
* ``l2``, eq. 8: cross-entropy (the stock ``type: cross_entropy`` with ``epsilon: 0``) on the
  logits of randomly convex-combined sequences ``z = sum_i w_i x_i``, which the model computes
  in training (:func:`attnreid.models.duatm.convex_combine`: its ``"logits"`` output, one
  combination per sequence, so the labels are the batch's; the weights are drawn there).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnreid.errors import ConfigError
from attnreid.losses.composite import register_loss
from attnreid.losses.triplet import batch_hard_triplet, check_margin


class MatchingTripletLoss(nn.Module):
    """Batch-hard triplet loss on a precomputed ``(B, B)`` distance matrix (eq. 6).

    ``margin=None`` gives the soft margin ``log(1 + exp(d_ap - d_an))``.
    """

    def __init__(self, margin: float | None = 0.2) -> None:
        super().__init__()
        self.margin = check_margin(margin, "matching triplet")

    def forward(self, dist: Tensor, labels: Tensor) -> Tensor:
        # dist: (B, B), labels: (B,)
        if dist.dim() != 2 or dist.shape[0] != dist.shape[1] or dist.shape[0] != len(labels):
            raise ConfigError(
                f"matching triplet loss needs a (B, B) distance matrix for {len(labels)} "
                f"labels, got shape {tuple(dist.shape)}"
            )
        return batch_hard_triplet(dist, labels, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


class DecorrelationLoss(nn.Module):
    """Eq. 7: ``mean_b (1 / S^2) ||I_S - X_b X_b^T||_F^2`` for sequences ``(B, S, D)``."""

    def forward(self, seq: Tensor, labels: Tensor | None = None) -> Tensor:
        # seq: (B, S, D); labels unused
        if seq.dim() != 3:
            raise ConfigError(
                f"de-correlation loss needs sequences (B, S, D), got shape {tuple(seq.shape)}"
            )
        s = seq.shape[1]
        seq = seq.float()
        gram = seq @ seq.transpose(1, 2)  # (B, S, S)
        eye = torch.eye(s, device=seq.device, dtype=seq.dtype)
        return (eye - gram).pow(2).sum(dim=(1, 2)).mean() / s**2


register_loss("matching_triplet", MatchingTripletLoss, "dist")
register_loss("decorrelation", DecorrelationLoss, "seq")
