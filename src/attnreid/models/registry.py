"""A small model registry, in the manner of timm.

``build_model(name, num_classes, pretrained="none", **options)`` builds a registered re-ID
network. Every model is a :class:`ReIDModel`: in training mode ``forward`` returns
``{branch: {"feat": (B, D), "logits": (B, C), ...}}`` for the losses; in eval mode it
returns the test feature ``(B, D)``. The name and options are recorded on the model so that
checkpoints can rebuild it and refuse weights of another architecture or class count.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.utils.checks import did_you_mean, positive_int


class ReIDModel(nn.Module):
    """Base class: subclasses call :meth:`set_output` and implement forward."""

    feature_dim: int
    num_classes: int
    input_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    input_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    model_name: str = ""
    model_options: dict[str, Any]
    #: The config the model was built from or trained with (None: built by ``build_model``):
    #: its test settings are what :func:`attnreid.evaluate` uses.
    config: dict[str, Any] | None = None

    def set_output(self, feature_dim: int, num_classes: int, backbone: nn.Module) -> None:
        """Record the test feature size, the class count and the backbone's input normalisation."""
        self.feature_dim, self.num_classes = feature_dim, num_classes
        self.input_mean, self.input_std = backbone.mean, backbone.std

    def compute_distance(self, query: Tensor, gallery: Tensor) -> Tensor | None:
        """A model-specific query x gallery distance, or None to use the configured metric."""
        return None


ModelFactory = Callable[..., ReIDModel]
_MODELS: dict[str, tuple[ModelFactory, dict[str, Any]]] = {}


def register_model(name: str, **defaults: Any) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering a model class (or factory) ``fn(num_classes, pretrained, **options)``
    under ``name``; its signature lists the options ``build_model`` accepts (a class whose
    ``__init__`` takes ``**options`` passes them on to its base class: it accepts the base
    class's options, then its own).

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
    return [p for p in _parameters(fn) if p not in ("num_classes", "pretrained")]


def _parameters(fn: Callable[..., Any]) -> list[str]:
    params = inspect.signature(fn).parameters.values()
    own = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not (isinstance(fn, type) and any(p.kind is p.VAR_KEYWORD for p in params)):
        return own
    inherited = _parameters(fn.__mro__[1])
    return inherited + [p for p in own if p not in inherited]


def _lookup(name: str) -> tuple[ModelFactory, dict[str, Any]]:
    if name not in _MODELS:
        raise ModelError(
            f"unknown model {name!r}{did_you_mean(name, _MODELS)} "
            f"(available: {', '.join(list_models())})"
        )
    return _MODELS[name]


def build_model(name: str, num_classes: int, pretrained: str = "none", **options: Any) -> ReIDModel:
    """Build model ``name`` with a ``num_classes``-way classifier.

    ``pretrained`` initialises the backbone: ``"none"``, ``"imagenet"`` or a local weights file.
    """
    fn, defaults = _lookup(name)
    positive_int(num_classes, "num_classes", ModelError)
    allowed = model_options(name)
    for opt in options:
        if opt not in allowed:
            raise ModelError(
                f"model {name!r} has no option {opt!r}{did_you_mean(opt, allowed)} "
                f"(options: {', '.join(allowed)})"
            )
    merged = {**defaults, **options}
    model = fn(num_classes=num_classes, pretrained=pretrained, **merged)
    model.model_name = name
    model.model_options = dict(options)
    return model
