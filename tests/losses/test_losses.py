from __future__ import annotations

import math

import pytest
import torch

from attnreid.errors import ConfigError
from attnreid.losses import CompositeLoss, CrossEntropyLabelSmooth, TripletLoss


def test_triplet_hand_computed():
    # 1-D features: identity 0 at 0 and 1, identity 1 at 3 and 5
    x = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    y = torch.tensor([0, 0, 1, 1])
    # hardest positive / negative distances per anchor:
    # a0: p=1, n=3 ; a1: p=1, n=2 ; a2: p=2, n=2 ; a3: p=2, n=4
    hard = TripletLoss(margin=0.5)(x, y)
    assert hard.item() == pytest.approx((0 + 0 + 0.5 + 0) / 4, abs=1e-5)
    soft = TripletLoss(margin=None)(x, y)
    expect = sum(math.log1p(math.exp(p - n)) for p, n in ((1, 3), (1, 2), (2, 2), (2, 4))) / 4
    assert soft.item() == pytest.approx(expect, abs=1e-5)


def test_triplet_no_valid_anchor_is_zero_with_grad():
    x = torch.randn(4, 8, requires_grad=True)
    loss = TripletLoss()(x, torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0


def test_label_smoothing_hand_computed():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    eps = 0.1
    logp = torch.log_softmax(logits, 1)[0]
    target = torch.tensor([eps / 3 + 0.9, eps / 3, eps / 3])
    expect = -(target * logp).sum()
    got = CrossEntropyLabelSmooth(eps)(logits, torch.tensor([0]))
    assert got.item() == pytest.approx(expect.item(), abs=1e-6)


def test_composite_weights_and_branches():
    torch.manual_seed(0)
    y = torch.tensor([0, 0, 1, 1])
    out = {b: {"feat": torch.randn(4, 6), "logits": torch.randn(4, 2)} for b in ("g", "l")}
    loss = CompositeLoss(
        [
            {"type": "cross_entropy", "weight": 2.0, "epsilon": 0.0},
            {"type": "triplet", "margin": None, "branches": {"l": 0.5}},
        ]
    )
    total, parts = loss(out, y)
    ce = torch.nn.functional.cross_entropy
    expect = 2 * (ce(out["g"]["logits"], y) + ce(out["l"]["logits"], y)) + 0.5 * TripletLoss(None)(
        out["l"]["feat"], y
    )
    assert total.item() == pytest.approx(expect.item(), abs=1e-5)
    assert set(parts) == {"cross_entropy/g", "cross_entropy/l", "triplet/l"}


def test_composite_errors():
    with pytest.raises(ConfigError, match="did you mean 'triplet'"):
        CompositeLoss([{"type": "triplett"}])
    with pytest.raises(ConfigError, match="unknown option 'marginn'"):
        CompositeLoss([{"type": "triplet", "marginn": 0.3}])
    loss = CompositeLoss([{"type": "triplet", "branches": ["local"]}])
    with pytest.raises(ConfigError, match="no branch 'local'"):
        loss({"global": {"feat": torch.randn(2, 3)}}, torch.tensor([0, 1]))
