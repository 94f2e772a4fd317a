"""A small model registry, in the manner of timm.

``build_model(name, num_classes, pretrained="none", **options)`` builds a registered re-ID
network. Every model is a :class:`ReIDModel`: in training mode ``forward`` returns
``{branch: {"feat": (B, D), "logits": (B, C), ...}}`` for the losses; in eval mode it
returns the test feature ``(B, D)``. The name and options are recorded on the model so that
checkpoints can rebuild it and refuse weights of another architecture or class count.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from attnreid.errors import ModelError


class ReIDModel(nn.Module):
    """Base class: subclasses set ``feature_dim`` and ``num_classes`` and implement forward."""

    feature_dim: int
    num_classes: int
    input_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    input_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    model_name: str = ""
    model_options: dict[str, Any]
    #: The config the model was built from or trained with (None: built by ``build_model``):
    #: its test settings are what :func:`attnreid.evaluate` uses.
    config: dict[str, Any] | None = None

    def compute_distance(self, query: Tensor, gallery: Tensor) -> Tensor | None:
        """A model-specific query x gallery distance, or None to use the configured metric."""
        return None


ModelFactory = Callable[..., ReIDModel]
_MODELS: dict[str, tuple[ModelFactory, dict[str, Any]]] = {}


def register_model(name: str, **defaults: Any) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering a model class (or factory) ``fn(num_classes, pretrained, **options)``
    under ``name``; its signature lists the options ``build_model`` accepts.

    ``defaults`` pre-set options, so one family can register several names
    (``resnet50`` = ``baseline`` with ``backbone="resnet50"``).
    """

    def deco(fn: ModelFactory) -> ModelFactory:
        if name in _MODELS:
            raise ModelError(f"model name {name!r} is registered twice")
        _MODELS[name] = (fn, defaults)
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_MODELS)


def model_factory(name: str) -> ModelFactory:
    """The function registered under ``name``."""
    return _lookup(name)[0]


def model_options(name: str) -> list[str]:
    """The options ``build_model`` accepts for ``name``."""
    fn, _ = _lookup(name)
    return [p for p in inspect.signature(fn).parameters if p not in ("num_classes", "pretrained")]


def _lookup(name: str) -> tuple[ModelFactory, dict[str, Any]]:
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ModelError(f"unknown model {name!r}{hint} (available: {', '.join(list_models())})")
    return _MODELS[name]


def build_model(name: str, num_classes: int, pretrained: str = "none", **options: Any) -> ReIDModel:
    """Build model ``name`` with a ``num_classes``-way classifier.

    ``pretrained`` initialises the backbone: ``"none"``, ``"imagenet"`` or a local weights file.
    """
    fn, defaults = _lookup(name)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer, got {num_classes!r}")
    allowed = model_options(name)
    for opt in options:
        if opt not in allowed:
            close = difflib.get_close_matches(opt, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ModelError(
                f"model {name!r} has no option {opt!r}{hint} (options: {', '.join(allowed)})"
            )
    merged = {**defaults, **options}
    model = fn(num_classes=num_classes, pretrained=pretrained, **merged)
    model.model_name = name
    model.model_options = dict(options)
    return model
