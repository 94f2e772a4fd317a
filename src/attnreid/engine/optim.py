"""Optimisers and the per-epoch learning-rate schedule of the papers' recipes.

The schedule is a factor on the base learning rate, a pure function of the epoch:

* warm-up, ``linear`` (torchreid / fast-reid / Bag of Tricks): from ``warmup_factor`` to 1
  over ``warmup_epochs``: ``f = warmup_factor + (1 - warmup_factor) * epoch / warmup_epochs``;
* warm-up, ``staircase`` (Batch-DropBlock code, used by SONA-Net: 1e-4 rising by 1e-4 every
  5 epochs to 1e-3 at epoch 50): ``f = (epoch // step + 1) * step / warmup_epochs``;
* then step decay: multiplied by ``gamma`` at each epoch of ``milestones``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from attnreid.utils.checks import one_of


def lr_factor(
    epoch: int,
    *,
    warmup_epochs: int = 0,
    warmup_mode: str = "linear",
    warmup_factor: float = 0.01,
    warmup_step: int = 5,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> float:
    """Multiplier of the base learning rate at ``epoch`` (0-based)."""
    one_of(warmup_mode, ("linear", "staircase", "none"), "sched.warmup_mode")
    factor = 1.0
    if warmup_mode != "none" and epoch < warmup_epochs:
        if warmup_mode == "linear":
            alpha = epoch / warmup_epochs
            factor = warmup_factor * (1 - alpha) + alpha
        else:
            factor = (epoch // warmup_step + 1) * warmup_step / warmup_epochs
    decays = sum(1 for m in milestones if epoch >= m)
    return factor * gamma**decays


def build_scheduler(
    optimizer: torch.optim.Optimizer, sched: Mapping[str, Any]
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per epoch."""
    opts = dict(sched)
    lr_factor(0, **opts)  # validate

    def factor(epoch: int) -> float:
        return lr_factor(epoch, **opts)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _is_head(name: str) -> bool:
    return "classifier" in name or name.startswith(("head.", "heads."))


def build_optimizer(model: nn.Module, optim: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over the trainable parameters, with optional learning-rate
    factors for biases (``bias_lr_factor``) and classifier / head parameters
    (``head_lr_factor``)."""
    name = one_of(str(optim["name"]).lower(), ("adam", "adamw", "sgd"), "optim.name")
    lr, wd = float(optim["lr"]), float(optim["weight_decay"])
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        plr = lr * (float(optim.get("bias_lr_factor", 1.0)) if pname.endswith(".bias") else 1.0)
        plr *= float(optim.get("head_lr_factor", 1.0)) if _is_head(pname) else 1.0
        groups.setdefault((plr, wd), []).append(p)
    params = [{"params": ps, "lr": glr, "weight_decay": gwd} for (glr, gwd), ps in groups.items()]
    if name == "adam":
        return torch.optim.Adam(
            params, lr=lr, weight_decay=wd, betas=tuple(optim.get("betas", (0.9, 0.999)))
        )
    if name == "adamw":
        return torch.optim.AdamW(
            params, lr=lr, weight_decay=wd, betas=tuple(optim.get("betas", (0.9, 0.999)))
        )
    return torch.optim.SGD(
        params,
        lr=lr,
        weight_decay=wd,
        momentum=float(optim.get("momentum", 0.9)),
        nesterov=bool(optim.get("nesterov", False)),
    )
