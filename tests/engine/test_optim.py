from __future__ import annotations

import pytest
import torch

from attnreid.engine.optim import build_optimizer, lr_factor
from attnreid.errors import ConfigError


def test_staircase_warmup_matches_sona_recipe():
    # SONA / Batch-DropBlock: lr = 1e-4 * (epoch // 5 + 1) for epoch < 50, 1e-3 to 200,
    # 1e-4 to 300, 1e-5 to 400 (base lr 1e-3)
    kw = dict(warmup_epochs=50, warmup_mode="staircase", warmup_step=5, milestones=[200, 300])
    for epoch in (0, 4, 5, 27, 49, 50, 199, 200, 299, 300, 399):
        if epoch < 50:
            expect = 1e-4 * (epoch // 5 + 1)
        else:
            expect = 1e-3 * 0.1 ** sum(epoch >= m for m in (200, 300))
        assert 1e-3 * lr_factor(epoch, **kw) == pytest.approx(expect)


def test_linear_warmup():
    kw = dict(warmup_epochs=10, warmup_mode="linear", warmup_factor=0.01, milestones=[40, 70])
    assert lr_factor(0, **kw) == pytest.approx(0.01)
    assert lr_factor(5, **kw) == pytest.approx(0.505)
    assert lr_factor(10, **kw) == 1.0
    assert lr_factor(40, **kw) == pytest.approx(0.1)
    assert lr_factor(75, **kw) == pytest.approx(0.01)
    with pytest.raises(ConfigError):
        lr_factor(0, warmup_mode="cosine")


def test_optimizer_groups():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = build_optimizer(
        model,
        {
            "name": "sgd",
            "lr": 0.1,
            "weight_decay": 0.0,
            "momentum": 0.9,
            "nesterov": True,
            "betas": [0.9, 0.999],
            "bias_lr_factor": 2.0,
            "head_lr_factor": 1.0,
        },
    )
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == [0.1, 0.2]
    with pytest.raises(ConfigError, match="optim.name"):
        build_optimizer(model, {"name": "lbfgs", "lr": 0.1, "weight_decay": 0.0})


def test_transform_schedule_switches_at_epoch():
    from attnreid.engine.callbacks import TransformSchedule

    sched = TransformSchedule([(50, "late"), (0, "early")])
    assert sched.transform_at(0) == "early"
    assert sched.transform_at(49) == "early"
    assert sched.transform_at(50) == "late"
