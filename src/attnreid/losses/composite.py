"""A weighted sum of loss terms over the branches of a model, built from config.

A model in training mode returns ``{branch: {"feat": (B, D), "logits": (B, C), ...}}``.
Each term names its loss ``type``, a ``weight``, the ``branches`` it applies to and the
loss's own options::

    loss:
      - {type: cross_entropy, weight: 1.0, epsilon: 0.1}            # every branch with logits
      - {type: triplet, weight: 1.0, margin: null, branches: [global, local]}
      - {type: triplet, weight: 1.0, margin: 0.3, branches: {global: 1.0, local: 0.5}}

``branches`` is ``all`` (default: every branch that has the loss's input), a list, or a map
of per-branch weights. The total is ``sum_term weight * sum_branch w_b * loss(branch)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attnreid.errors import ConfigError
from attnreid.losses.cross_entropy import CrossEntropyLabelSmooth
from attnreid.losses.triplet import TripletLoss
from attnreid.utils.checks import did_you_mean

# type name -> (loss class, the key of the branch output it consumes)
LOSSES: dict[str, tuple[type[nn.Module], str]] = {
    "cross_entropy": (CrossEntropyLabelSmooth, "logits"),
    "triplet": (TripletLoss, "feat"),
}


def register_loss(name: str, cls: type[nn.Module], input_key: str) -> None:
    """Make ``cls(**options)``, called as ``cls(branch_output[input_key], labels)``,
    available as ``type: name`` in configs."""
    LOSSES[name] = (cls, input_key)


@dataclass
class _Term:
    name: str
    module: nn.Module
    key: str
    weight: float
    branches: dict[str, float] | None  # None = every branch that has ``key``


class CompositeLoss(nn.Module):
    """Sum of configured loss terms; ``forward`` returns ``(total, {name: value})``."""

    def __init__(self, terms: Sequence[Mapping[str, Any]]) -> None:
        super().__init__()
        if not terms:
            raise ConfigError("loss: at least one loss term is needed")
        self.terms: list[_Term] = []
        self.modules_ = nn.ModuleList()
        for i, spec in enumerate(terms):
            term = _build_term(dict(spec), i)
            self.terms.append(term)
            self.modules_.append(term.module)

    def forward(
        self, outputs: Mapping[str, Mapping[str, Tensor]], labels: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        total = torch.zeros((), device=labels.device)
        parts: dict[str, Tensor] = {}
        for term in self.terms:
            if term.branches is None:
                branches = {b: 1.0 for b, out in outputs.items() if term.key in out}
                if not branches:
                    raise ConfigError(
                        f"loss {term.name}: no branch of the model outputs {term.key!r} "
                        f"(branches: {', '.join(outputs)})"
                    )
            else:
                branches = term.branches
            for branch, bw in branches.items():
                if branch not in outputs or term.key not in outputs[branch]:
                    raise ConfigError(
                        f"loss {term.name}: the model has no branch {branch!r} with "
                        f"{term.key!r} (branches: {', '.join(outputs)})"
                    )
                value = term.module(outputs[branch][term.key], labels)
                parts[f"{term.name}/{branch}"] = value.detach()
                total = total + term.weight * bw * value
        return total, parts


def _build_term(spec: dict[str, Any], index: int) -> _Term:
    kind = spec.pop("type", None)
    if kind not in LOSSES:
        raise ConfigError(
            f"loss term {index}: unknown type {kind!r}{did_you_mean(kind, LOSSES)} "
            f"(choices: {', '.join(LOSSES)})"
        )
    weight = float(spec.pop("weight", 1.0))
    name = str(spec.pop("name", kind))
    raw = spec.pop("branches", "all")
    if raw == "all" or raw is None:
        branches = None
    elif isinstance(raw, str):
        branches = {raw: 1.0}
    elif isinstance(raw, Mapping):
        branches = {str(k): float(v) for k, v in raw.items()}
    elif isinstance(raw, Sequence):
        branches = {str(b): 1.0 for b in raw}
    else:
        raise ConfigError(f"loss term {index} ({kind}): branches must be 'all', a list or a map")
    cls, key = LOSSES[kind]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for opt in spec:
        if opt not in allowed:
            raise ConfigError(
                f"loss term {index} ({kind}): unknown option {opt!r} "
                f"(options: type, weight, name, branches, {', '.join(allowed)})"
            )
    return _Term(name, cls(**spec), key, weight, branches)
