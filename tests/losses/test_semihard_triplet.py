"""CCAN's semi-hard triplet mining and loss (section 3.3, eq. 5), against a brute-force miner."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnreid.errors import ConfigError
from attnreid.losses import CompositeLoss, SemiHardTripletLoss, mine_semihard_triplets


def brute_force(
    dist: torch.Tensor, labels: torch.Tensor, r: int, per: str, band: float | None = None
) -> list[tuple]:
    """Loops over anchors, positives and negatives, as the paper and the public code read;
    ``band``: FaceNet's upper bound d(a, n) < d(a, p) + band."""
    n = len(labels)
    lab = labels.tolist()
    out: list[tuple[int, int, int]] = []

    def semihard(a: int, p: int, j: int) -> bool:
        inside = band is None or float(dist[a, j]) < float(dist[a, p]) + band
        return float(dist[a, p]) < float(dist[a, j]) and inside

    for a in range(n):
        negatives = sorted(
            (j for j in range(n) if lab[j] != lab[a]), key=lambda j: (float(dist[a, j]), j)
        )
        positives = [p for p in range(n) if p != a and lab[p] == lab[a]]
        if per == "pair":
            for p in positives:
                farther = [j for j in negatives if semihard(a, p, j)]
                out += [(a, p, j) for j in farther[:r]]
        else:
            pairs = [(p, j) for j in negatives for p in positives if semihard(a, p, j)]
            out += [(a, p, j) for p, j in pairs[:r]]
    return out


def _batch(seed: int, pk: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # P x K = 8 x 4, or uneven identities, some with a single image (no positive)
    labels = torch.arange(8).repeat_interleave(4) if pk else torch.randint(0, 7, (30,), generator=g)
    return torch.randn(len(labels), 5, generator=g), labels


@pytest.mark.parametrize("per", ["pair", "anchor"])
@pytest.mark.parametrize("r", [1, 3, 10])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_miner_matches_brute_force(per: str, r: int, seed: int) -> None:
    feats, labels = _batch(seed, pk=seed != 2)
    dist = torch.cdist(feats, feats)
    mined = mine_semihard_triplets(dist, labels, r, per)
    expected = brute_force(dist, labels, r, per)
    assert len(expected) > 0
    assert [tuple(t) for t in mined.tolist()] == expected


@pytest.mark.parametrize("per", ["pair", "anchor"])
def test_mined_triplets_are_semihard_and_at_most_r(per: str) -> None:
    feats, labels = _batch(3, pk=True)
    dist = torch.cdist(feats, feats)
    r = 4
    triplets = mine_semihard_triplets(dist, labels, r, per)
    a, p, n = triplets.unbind(1)
    assert (labels[a] == labels[p]).all() and (a != p).all()
    assert (labels[a] != labels[n]).all()
    assert (dist[a, p] < dist[a, n]).all()
    group = triplets[:, :2] if per == "pair" else triplets[:, :1]
    _, counts = torch.unique(group, dim=0, return_counts=True)
    assert counts.max() <= r
    # the chosen negatives are the nearest semi-hard ones: any semi-hard negative left out of a
    # full pair is at least as far as every chosen one
    if per == "pair":
        for anchor, positive in torch.unique(triplets[:, :2], dim=0).tolist():
            chosen = n[(a == anchor) & (p == positive)]
            if len(chosen) < r:
                continue
            farther = (labels != labels[anchor]) & (dist[anchor] > dist[anchor, positive])
            farther[chosen] = False
            if farther.any():
                assert dist[anchor, farther].min() >= dist[anchor, chosen].max()


def test_loss_is_equation_5_on_the_mined_triplets() -> None:
    feats, labels = _batch(4, pk=True)
    feats.requires_grad_(True)
    loss_fn = SemiHardTripletLoss(margin=1.0, num_negatives=10)
    loss = loss_fn(feats, labels)
    triplets = mine_semihard_triplets(torch.cdist(feats, feats), labels, 10, "pair")
    x_a, x_p, x_n = (feats[triplets[:, i]] for i in range(3))
    expected = F.relu((x_a - x_p).pow(2).sum(1) - (x_a - x_n).pow(2).sum(1) + 1.0).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0


def test_unsquared_variant_is_the_public_codes_triplet_margin_loss() -> None:
    feats, labels = _batch(5, pk=True)
    loss = SemiHardTripletLoss(margin=1.0, num_negatives=5, per="anchor", squared=False)(
        feats, labels
    )
    triplets = mine_semihard_triplets(torch.cdist(feats, feats), labels, 5, "anchor")
    reference = torch.nn.TripletMarginLoss(margin=1.0, p=2)(
        *(feats[triplets[:, i]] for i in range(3))
    )
    torch.testing.assert_close(loss, reference, rtol=1e-4, atol=1e-4)


def test_no_triplet_gives_a_zero_loss_with_a_graph() -> None:
    feats = torch.randn(4, 3, requires_grad=True)
    loss = SemiHardTripletLoss()(feats, torch.zeros(4, dtype=torch.long))  # one identity
    assert loss.item() == 0.0
    loss.backward()
    assert feats.grad is not None


def test_registered_for_configs_and_validated() -> None:
    composite = CompositeLoss([{"type": "semihard_triplet", "margin": 1.5, "num_negatives": 10}])
    feats, labels = _batch(6, pk=True)
    total, parts = composite({"global": {"feat": feats}, "local": {"feat": feats * 2}}, labels)
    assert set(parts) == {"semihard_triplet/global", "semihard_triplet/local"}
    torch.testing.assert_close(
        total, parts["semihard_triplet/global"] + parts["semihard_triplet/local"]
    )
    with pytest.raises(ConfigError, match="per"):
        SemiHardTripletLoss(per="batch")
    with pytest.raises(ConfigError, match="num_negatives"):
        SemiHardTripletLoss(num_negatives=0)
    with pytest.raises(ConfigError, match="margin"):
        SemiHardTripletLoss(margin=-1.0)


@pytest.mark.parametrize("per", ["pair", "anchor"])
@pytest.mark.parametrize("band", [0.3, 1.0])
def test_within_margin_miner_matches_brute_force(per: str, band: float) -> None:
    feats, labels = _batch(7, pk=True)
    dist = torch.cdist(feats, feats)
    mined = mine_semihard_triplets(dist, labels, 10, per, margin=band)
    expected = brute_force(dist, labels, 10, per, band)
    assert 0 < len(expected) < len(brute_force(dist, labels, 10, per))
    assert [tuple(t) for t in mined.tolist()] == expected


@pytest.mark.parametrize("squared", [True, False])
def test_within_margin_keeps_the_nonzero_terms_and_drops_the_rest(squared: bool) -> None:
    feats, labels = _batch(8, pk=True)
    feats = feats * (0.5 if squared else 2.0)  # some, not all, semi-hard negatives in the band
    plain = SemiHardTripletLoss(margin=1.0, squared=squared)
    banded = SemiHardTripletLoss(margin=1.0, squared=squared, within_margin=True)
    dist = torch.cdist(feats, feats)
    if squared:
        dist = dist.square()
    every = mine_semihard_triplets(dist, labels, 10, "pair")
    inside = mine_semihard_triplets(dist, labels, 10, "pair", margin=1.0)
    a, p, n = every.unbind(1)
    terms = torch.relu(dist[a, p] - dist[a, n] + 1.0)
    assert 0 < len(inside) < len(every)
    # the band drops exactly the zero-loss triplets: same sum, a smaller |P|
    torch.testing.assert_close(plain(feats, labels), terms.mean(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        banded(feats, labels), terms.sum() / len(inside), rtol=1e-4, atol=1e-5
    )
    assert len(inside) == int((terms > 0).sum())
