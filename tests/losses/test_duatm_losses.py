"""DuATM's losses: matching triplet, de-correlation (eq. 7), convex combinations (eq. 8)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnreid.errors import ConfigError
from attnreid.losses import CompositeLoss, TripletLoss
from attnreid.losses.composite import LOSSES
from attnreid.losses.duatm import DecorrelationLoss, MatchingTripletLoss
from attnreid.models.duatm import convex_combine, random_convex_weights
from attnreid.utils.distance import pairwise_distance


def test_decorrelation_matches_a_hand_computed_value():
    # sequence 1: e1, (cos t, sin t), e2 -> off-diagonal Gram entries cos t, 0, sin t
    t = 0.3
    s1 = torch.tensor([[1.0, 0.0, 0.0], [math.cos(t), math.sin(t), 0.0], [0.0, 1.0, 0.0]])
    s2 = torch.eye(3)  # orthonormal: loss 0
    expected_1 = 2 * (math.cos(t) ** 2 + 0.0**2 + math.sin(t) ** 2) / 3**2  # = 2 / 9
    loss = DecorrelationLoss()(torch.stack([s1, s2]), torch.zeros(2))
    assert loss.item() == pytest.approx((expected_1 + 0.0) / 2, abs=1e-7)
    # non-unit vectors: the diagonal counts too, ||I - X X^T||_F^2 / S^2
    s3 = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert DecorrelationLoss()(s3[None]).item() == pytest.approx((1 - 4) ** 2 / 4)


def test_decorrelation_readings_of_eq7_differ_by_a_constant():
    """``F(X)`` as ``D x S`` (I of size S, ours) or ``S x D`` (I of size D): for unit-norm
    vectors the two losses differ by ``(D - S) / S^2``, so their gradients are the same."""
    s, d = 5, 12
    seq = F.normalize(torch.randn(3, s, d), dim=-1).requires_grad_(True)
    ours = DecorrelationLoss()(seq)
    eye = torch.eye(d)
    other = ((eye - seq.transpose(1, 2) @ seq) ** 2).sum(dim=(1, 2)).mean() / s**2
    assert other.item() == pytest.approx(ours.item() + (d - s) / s**2, abs=1e-5)
    (g_ours,) = torch.autograd.grad(ours, seq)
    (g_other,) = torch.autograd.grad(other, seq)
    assert torch.allclose(g_ours, g_other, atol=1e-6)


def test_decorrelation_rejects_vectors():
    with pytest.raises(ConfigError, match=r"\(B, S, D\)"):
        DecorrelationLoss()(torch.ones(4, 8))


@pytest.mark.parametrize("p", [0.0, 0.2, 0.6, 0.95])
def test_convex_weights_are_non_negative_and_sum_to_one(p):
    g = torch.Generator().manual_seed(0)
    w = random_convex_weights(2000, 8, p, generator=g)
    assert w.shape == (2000, 8)
    assert (w >= 0).all()
    assert torch.allclose(w.sum(1), torch.ones(2000), atol=1e-6)
    zeros = (w == 0).float().mean().item()
    rows_all_dropped = p**8
    # each weight is reset with probability p (a fully reset row becomes uniform instead)
    assert zeros == pytest.approx(p - rows_all_dropped, abs=0.02)


def test_convex_weights_fall_back_to_uniform_when_all_are_dropped():
    w = random_convex_weights(50, 1, 0.999999, generator=torch.Generator().manual_seed(1))
    assert torch.equal(w, torch.ones(50, 1))
    with pytest.raises(ConfigError, match="drop probability"):
        random_convex_weights(2, 3, 1.0)


def test_convex_combine_is_a_weighted_mean_of_the_sequence():
    seq = F.normalize(torch.randn(4, 6, 5), dim=-1)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    z = convex_combine(seq, 0.2, generator=g1)
    w = random_convex_weights(4, 6, 0.2, generator=g2)
    assert torch.allclose(z, (w[..., None] * seq).sum(1), atol=1e-6)
    assert (z.norm(dim=1) <= 1 + 1e-6).all()  # inside the convex hull of unit vectors


def test_matching_triplet_equals_batch_hard_triplet_on_euclidean_distances():
    torch.manual_seed(0)
    feats, labels = torch.randn(12, 7), torch.arange(4).repeat_interleave(3)
    ours = MatchingTripletLoss(margin=0.2)(pairwise_distance(feats), labels)
    ref = TripletLoss(margin=0.2)(feats, labels)
    assert ours.item() == pytest.approx(ref.item(), abs=1e-6)
    soft = MatchingTripletLoss(margin=None)(pairwise_distance(feats), labels)
    assert soft.item() == pytest.approx(TripletLoss(margin=None)(feats, labels).item(), abs=1e-6)


def test_matching_triplet_hand_computed():
    # anchors 0,1 (id 0) and 2,3 (id 1); hardest positive / negative per anchor
    d = torch.tensor(
        [[0.0, 0.5, 0.6, 0.9], [0.5, 0.0, 0.2, 0.8], [0.6, 0.2, 0.0, 0.1], [0.9, 0.8, 0.1, 0.0]]
    )
    labels = torch.tensor([0, 0, 1, 1])
    # max(0, 0.2 + d_ap - d_an): 0.5-0.6+0.2 = 0.1, 0.5-0.2+0.2 = 0.5, 0.1-0.2+0.2 = 0.1,
    # 0.1-0.8+0.2 = 0 -> mean 0.175
    assert MatchingTripletLoss(0.2)(d, labels).item() == pytest.approx(0.175)
    with pytest.raises(ConfigError, match=r"\(B, B\)"):
        MatchingTripletLoss()(torch.zeros(4, 3), labels)


def test_losses_are_registered_and_compose():
    assert LOSSES["matching_triplet"] == (MatchingTripletLoss, "dist")
    assert LOSSES["decorrelation"] == (DecorrelationLoss, "seq")
    torch.manual_seed(1)
    seq = F.normalize(torch.randn(6, 4, 8), dim=-1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    outputs = {
        "duatm": {
            "dist": pairwise_distance(seq.mean(1)),
            "seq": seq,
            "logits": torch.randn(6, 3),
        }
    }
    loss = CompositeLoss(
        [
            {"type": "matching_triplet", "margin": 0.2},
            {"type": "decorrelation", "weight": 0.1},
            {"type": "cross_entropy", "weight": 0.5, "epsilon": 0.0},
        ]
    )
    total, parts = loss(outputs, labels)
    expected = (
        MatchingTripletLoss(0.2)(outputs["duatm"]["dist"], labels)
        + 0.1 * DecorrelationLoss()(seq)
        + 0.5 * F.cross_entropy(outputs["duatm"]["logits"], labels)
    )
    assert total.item() == pytest.approx(expected.item(), abs=1e-6)
    assert set(parts) == {"matching_triplet/duatm", "decorrelation/duatm", "cross_entropy/duatm"}
