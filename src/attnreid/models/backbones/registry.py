"""The backbone registry: :func:`build_backbone` and :func:`list_backbones`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from attnreid.models.backbones.base import Backbone, Family, assemble_backbone, check_backbone_name
from attnreid.models.backbones.densenet import DENSENET121
from attnreid.models.backbones.efficientnet import EFFICIENTNET_LITE0
from attnreid.models.backbones.googlenet import GOOGLENET
from attnreid.models.backbones.mobilenet import MOBILENET_V2
from attnreid.models.backbones.osnet import OSNET_NAMES, osnet_family
from attnreid.models.backbones.resnet import RESNET_NAMES, resnet_family
from attnreid.models.backbones.weights import (
    IMAGENET_SOURCES,
    resolve_pretrained_with_source,
    wants_no_weights,
)

_FAMILIES: dict[str, Family] = {
    **{name: resnet_family(name) for name in RESNET_NAMES},
    "mobilenet_v2": MOBILENET_V2,
    "efficientnet_lite0": EFFICIENTNET_LITE0,
    "densenet121": DENSENET121,
    "googlenet": GOOGLENET,
    **{name: osnet_family(name) for name in OSNET_NAMES},
}
assert set(_FAMILIES) == set(IMAGENET_SOURCES), "every backbone needs an ImageNet source"


def list_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone`, sorted."""
    return sorted(_FAMILIES)


def build_backbone(
    name: str,
    pretrained: str | os.PathLike[str] | None = "none",
    *,
    last_stride: int = 2,
    dilation: bool | Sequence[bool] = False,
    **kwargs: Any,
) -> Backbone:
    """Build backbone ``name`` with weights chosen by ``pretrained``.

    Args:
        name: one of :func:`list_backbones`.
        pretrained: ``"none"`` (random init), ``"imagenet"`` (hub cache, bundled package file,
            or download; see :mod:`attnreid.models.backbones.weights`) or the path of a
            ``.pth``/``.pt``/``.safetensors`` state dict.
        last_stride: 1 to keep resolution in the last downsampling stage (every family; which
            layer changes is documented in each family's module; the OSNets already end at
            stride 16 with 2, and at stride 8 with 1).
        dilation: ResNet-50/101/152 only: ``True`` for ``[False, True, True]`` or three bools
            for ``replace_stride_with_dilation`` (layer2, layer3, layer4).
        **kwargs: family options (``zero_init_residual`` for ResNets, ``memory_efficient`` for
            DenseNet, ``drop_path_rate`` for EfficientNet-Lite0).

    Raises:
        ModelError: unknown name or option, contradictory options, missing / unreadable /
            ill-fitting weights, or ImageNet weights that are neither cached nor downloadable.
    """
    check_backbone_name(name, _FAMILIES)
    # Build first so that a bad option is reported before any file is read or downloaded;
    # initialisation is skipped where it is costly and weights will overwrite it.
    backbone = assemble_backbone(
        name,
        _FAMILIES[name],
        last_stride=last_stride,
        dilation=dilation,
        init_weights=wants_no_weights(pretrained),
        options=kwargs,
    )
    state, source = resolve_pretrained_with_source(name, pretrained)
    if state is not None:
        backbone.load_reference_state_dict(state, source)
    return backbone
