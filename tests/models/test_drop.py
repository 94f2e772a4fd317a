"""DropBlock, DropBlock+ and batch feature erasing: mask statistics, shapes, modes, options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnreid.errors import ModelError
from attnreid.models.drop import (
    BatchFeatureErasing,
    DropBlock,
    DropBlockPlus,
    build_drop,
    dropblock_gamma,
)


def _coverage(height: int, width: int, bh: int, bw: int) -> torch.Tensor:
    """How many valid block positions cover each unit of the map: (H, W)."""
    seeds = torch.ones(1, 1, height - bh + 1, width - bw + 1)
    return F.conv_transpose2d(seeds, torch.ones(1, 1, bh, bw))[0, 0]


def _whole_blocks_only(dropped: torch.Tensor, bh: int, bw: int) -> bool:
    """True when the dropped units are exactly a union of whole bh x bw blocks inside the map."""
    # every block position whose window is entirely dropped ...
    full = -F.max_pool2d(-dropped, (bh, bw), stride=1)
    # ... spread back over its window must give back every dropped unit
    spread = F.max_pool2d(F.pad(full, (bw - 1, bw - 1, bh - 1, bh - 1)), (bh, bw), stride=1)
    return torch.equal(spread, dropped)


def test_gamma_formula():
    # Ghiasi et al.'s square formula on a square map
    assert dropblock_gamma(14, 14, 7, 7, 0.1) == pytest.approx(0.1 * 14**2 / 7**2 / 8**2)
    # the rectangular generalisation (height x width for each squared side) at the paper's
    # map and block
    assert dropblock_gamma(48, 16, 5, 8, 0.1) == pytest.approx(0.1 * 768 / 40 / (44 * 9))
    # a block larger than the map is clamped to it: drop the whole map with rate drop_prob
    assert dropblock_gamma(4, 3, 5, 8, 0.2) == pytest.approx(0.2)


@pytest.mark.parametrize(("block", "size"), [((5, 8), (48, 16)), ((3, 3), (20, 12))])
def test_dropped_fraction_matches_the_expectation(block, size):
    torch.manual_seed(0)
    bh, bw = block
    module = DropBlockPlus(0.1, block)
    x = torch.ones(16, 32, *size)
    dropped = 1 - module.keep_mask(x)
    gamma = module.gamma(*size)
    # exact expectation: a unit survives when none of the seeds covering it fires
    expected = (1 - (1 - gamma) ** _coverage(*size, bh, bw)).mean().item()
    assert dropped.mean().item() == pytest.approx(expected, abs=0.01)
    # and the gamma formula delivers about the requested drop probability
    assert expected == pytest.approx(0.1, abs=0.02)


def test_dropped_units_form_whole_blocks_of_the_requested_shape():
    torch.manual_seed(1)
    module = DropBlockPlus(0.005, (5, 8), gamma_mode="rate")  # sparse seeds: single blocks
    dropped = 1 - module.keep_mask(torch.zeros(4, 64, 48, 16))
    assert _whole_blocks_only(dropped, 5, 8)
    assert not _whole_blocks_only(dropped, 8, 5)  # the block is 5 high and 8 wide
    counts = dropped.sum((2, 3))
    assert (counts[counts > 0] >= 40).all()
    # channels holding one block: exactly a 5 x 8 rectangle
    single = (counts == 40).nonzero()
    assert len(single) > 0
    for b, c in single.tolist():
        rows, cols = dropped[b, c].nonzero(as_tuple=True)
        assert rows.max() - rows.min() + 1 == 5 and cols.max() - cols.min() + 1 == 8


def test_masks_are_per_sample_and_per_channel():
    torch.manual_seed(2)
    mask = DropBlockPlus(0.3, (2, 2)).keep_mask(torch.zeros(4, 8, 12, 6))
    assert mask.shape == (4, 8, 12, 6)
    assert not torch.equal(mask[0], mask[1])
    assert not torch.equal(mask[0, 0], mask[0, 1])


def test_square_dropblock():
    torch.manual_seed(3)
    module = DropBlock(0.01, 3, gamma_mode="rate")
    assert module.block_size == (3, 3)
    dropped = 1 - module.keep_mask(torch.zeros(2, 16, 20, 10))
    assert dropped.sum() > 0 and _whole_blocks_only(dropped, 3, 3)
    assert DropBlock(0.1, [4, 4]).block_size == (4, 4)
    with pytest.raises(ModelError, match="square"):
        DropBlock(0.1, [5, 8])


def test_rescaling_keeps_the_sum_and_eval_is_identity():
    torch.manual_seed(4)
    x = torch.ones(2, 8, 12, 6)
    module = DropBlockPlus(0.2, (3, 2)).train()
    y = module(x)
    assert (y == 0).any()
    assert y.sum().item() == pytest.approx(x.numel(), rel=1e-5)  # rescaled by numel / kept
    kept = y[y > 0]
    assert torch.allclose(kept, kept[0].expand_as(kept))
    no_rescale = DropBlockPlus(0.2, (3, 2), rescale=False).train()(x)
    assert set(no_rescale.unique().tolist()) == {0.0, 1.0}
    module.eval()
    assert module(x) is x
    assert DropBlockPlus(0.0).train()(x) is x


def test_blocks_larger_than_the_map_are_clamped():
    torch.manual_seed(5)
    module = DropBlockPlus(0.5, (5, 8), gamma_mode="rate").train()
    mask = module.keep_mask(torch.zeros(8, 4, 4, 3))
    # the clamped block is the whole 4 x 3 map: each channel is kept or dropped entirely
    per_channel = mask.flatten(2)
    assert torch.equal(per_channel.amin(-1), per_channel.amax(-1))
    assert module(torch.ones(2, 3, 4, 3)).shape == (2, 3, 4, 3)


def test_gamma_as_rate():
    module = DropBlockPlus(0.1, (5, 8), gamma_mode="rate")
    assert module.gamma(48, 16) == 0.1
    torch.manual_seed(6)
    dropped = 1 - module.keep_mask(torch.zeros(2, 16, 48, 16))
    expected = (1 - 0.9 ** _coverage(48, 16, 5, 8)).mean().item()
    assert dropped.mean().item() == pytest.approx(expected, abs=0.03)
    assert expected > 0.75  # the paper's gamma read as a seed rate drops most of the map


def test_bfe_one_rectangle_shared_by_batch_and_channels():
    torch.manual_seed(7)
    module = BatchFeatureErasing().train()
    assert module.erase_size(48, 16) == (16, 16)  # round(0.33 * 48) rows, full width
    x = torch.rand(4, 6, 48, 16) + 0.5
    y = module(x)
    erased = y == 0
    assert torch.equal(erased, erased[:1, :1].expand_as(erased))  # same for all samples, channels
    rows = erased[0, 0].any(1).nonzero().flatten()
    assert len(rows) == 16 and rows.max() - rows.min() == 15
    assert erased[0, 0, rows].all()  # full-width stripe
    torch.testing.assert_close(y[~erased], x[~erased])  # no rescaling
    tops = set()
    for _ in range(300):
        tops.add(int((module.keep_mask(x)[0, 0, :, 0] == 0).nonzero()[0]))
    assert tops == set(range(48 - 16 + 1))  # every position of the stripe occurs
    module.eval()
    assert module(x) is x


def test_bfe_sizes_and_small_maps():
    module = BatchFeatureErasing(0.5, 0.5)
    assert module.erase_size(10, 4) == (5, 2)
    # Python's round, as the Batch-DropBlock code: 0.33 * 12 = 3.96 -> 4, 0.33 * 10 -> 3
    assert BatchFeatureErasing().erase_size(12, 4) == (4, 4)
    assert BatchFeatureErasing().erase_size(10, 4) == (3, 4)
    assert BatchFeatureErasing().erase_size(2, 1) == (1, 1)  # never erases nothing
    mask = module.keep_mask(torch.zeros(1, 1, 10, 4))
    assert mask.shape == (1, 1, 10, 4) and int((mask == 0).sum()) == 10


def test_ramp_raises_the_rate_linearly_and_is_saved():
    module = DropBlockPlus(0.2, (5, 8), ramp_steps=4).train()
    assert module.current_drop_prob() == 0.0 and "steps" in module.state_dict()
    x = torch.ones(2, 8, 48, 16)
    seen = []
    for _ in range(6):
        module(x)
        seen.append(module.current_drop_prob())
    assert seen == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    assert module.gamma(48, 16) == pytest.approx(dropblock_gamma(48, 16, 5, 8, 0.2))
    module.eval()(x)  # eval forwards do not advance the ramp
    assert int(module.steps) == 6
    resumed = DropBlockPlus(0.2, (5, 8), ramp_steps=4)
    resumed.load_state_dict(module.state_dict())
    assert resumed.current_drop_prob() == pytest.approx(0.2)
    # without a ramp the rate is fixed and no buffer is added to the weights
    fixed = DropBlockPlus(0.2, (5, 8))
    assert fixed.current_drop_prob() == 0.2 and "steps" not in fixed.state_dict()
    rate = DropBlockPlus(0.1, (5, 8), gamma_mode="rate", ramp_steps=2).train()
    rate(x)
    assert rate.gamma(48, 16) == pytest.approx(0.05)


def test_build_drop():
    assert isinstance(build_drop("none"), nn.Identity)
    db = build_drop("dropblock")
    assert type(db) is DropBlock and db.block_size == (5, 5)
    dbp = build_drop("dropblock_plus")
    assert type(dbp) is DropBlockPlus and dbp.block_size == (5, 8) and dbp.drop_prob == 0.1
    assert build_drop("dropblock_plus", block_size=[2, 4]).block_size == (2, 4)
    db_opts = build_drop("dropblock", rescale=False, ramp_steps=10, gamma_mode="rate")
    assert (db_opts.rescale, db_opts.ramp_steps, db_opts.gamma_mode) == (False, 10, "rate")
    assert build_drop("dropblock_plus", rescale=False).rescale is False
    bfe = build_drop("bfe", bfe_ratio=[0.5, 1.0])
    assert isinstance(bfe, BatchFeatureErasing) and bfe.h_ratio == 0.5


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: build_drop("cutout"), "drop must be"),
        (lambda: build_drop("bfe", bfe_ratio=[0.3]), "bfe_ratio"),
        (lambda: DropBlockPlus(1.0), "drop_prob"),
        (lambda: DropBlockPlus(-0.1), "drop_prob"),
        (lambda: DropBlockPlus(0.1, (0, 3)), "block_size"),
        (lambda: DropBlockPlus(0.1, (5, 8, 1)), "block_size"),
        (lambda: DropBlockPlus(0.1, gamma_mode="keep_prob"), "gamma_mode"),
        (lambda: DropBlockPlus(0.1, ramp_steps=-1), "ramp_steps"),
        (lambda: DropBlockPlus(0.1, ramp_steps=1.5), "ramp_steps"),
        (lambda: DropBlockPlus(0.1, rescale="no"), "rescale"),
        (lambda: BatchFeatureErasing(0.0), "h_ratio"),
        (lambda: BatchFeatureErasing(0.3, 1.5), "w_ratio"),
    ],
)
def test_option_errors(call, match):
    with pytest.raises(ModelError, match=match):
        call()
