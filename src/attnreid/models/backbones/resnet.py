"""ResNet-18/34/50/101/152 backbones over torchvision's ``resnet*``.

Stages: ``stem`` (``conv1``, ``bn1``, ``relu``, ``maxpool``; stride 4, 64 channels), then
``layer1`` .. ``layer4`` (strides 4, 8, 16, 32; 64/128/256/512 channels times the block
expansion, i.e. 256/512/1024/2048 for ResNet-50 and deeper). These are the boundaries the
attention networks need: SONA-Net inserts its second-order modules after ``layer2`` and
``layer3``, SA-ResNet attends over the ``layer4`` map.

Options:

* ``last_stride=1`` sets the stride of ``layer4``'s first block to 1 (the strided 3x3 conv —
  ``layer4.0.conv2`` for Bottleneck, ``layer4.0.conv1`` for BasicBlock — and the 1x1 conv of
  ``layer4.0.downsample``), the usual re-ID baseline trick: 256x128 input gives a 16x8 map.
* ``dilation`` is torchvision's ``replace_stride_with_dilation`` for ``layer2..layer4``:
  ``True`` means ``[False, True, True]`` (the dilated ResNet-50 of SONA-Net: 384x128 input gives
  48x16x2048). Only Bottleneck ResNets (50/101/152) support dilation. ``last_stride=1`` together
  with a dilated ``layer4`` is rejected, since both would decide how ``layer4`` keeps resolution.

Parameter names are torchvision's with ``conv1``/``bn1`` moved under ``stages.0`` and
``layerN`` renamed ``stages.N``; ``fc`` is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torchvision

from attnreid.errors import ModelError
from attnreid.models.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    StagePart,
    StageSpec,
    assemble_backbone,
    check_last_stride,
    reject_options,
    set_conv_stride,
)

RESNET_NAMES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_BASIC_BLOCK_NAMES = frozenset({"resnet18", "resnet34"})
_OPTIONS = ("zero_init_residual",)


def resolve_dilation(name: str, dilation: bool | Sequence[bool]) -> list[bool]:
    """Turn the ``dilation`` option into torchvision's 3-list ``replace_stride_with_dilation``."""
    if isinstance(dilation, bool):
        return [False, True, True] if dilation else [False, False, False]
    if isinstance(dilation, str) or not isinstance(dilation, Sequence):
        raise ModelError(
            f"dilation for {name!r} must be a bool or a list of 3 bools, got {dilation!r}"
        )
    flags = list(dilation)
    if len(flags) != 3 or not all(isinstance(f, bool) for f in flags):
        raise ModelError(
            f"dilation for {name!r} must be a bool or a list of 3 bools (layer2, layer3, layer4), "
            f"got {dilation!r}"
        )
    return flags


def build_resnet(
    name: str,
    *,
    last_stride: int = 2,
    dilation: bool | Sequence[bool] = False,
    init_weights: bool = True,
    **kwargs: Any,
) -> Backbone:
    """Build the ResNet backbone ``name`` (randomly initialised the torchvision way).

    ``init_weights`` is accepted for uniformity with the other families; torchvision always
    initialises ResNets, which is cheap.
    """
    del init_weights
    if name not in RESNET_NAMES:
        raise ModelError(f"{name!r} is not a resnet backbone ({', '.join(RESNET_NAMES)})")
    reject_options(name, kwargs, _OPTIONS)
    check_last_stride(name, last_stride)
    replace = resolve_dilation(name, dilation)
    if any(replace) and name in _BASIC_BLOCK_NAMES:
        raise ModelError(
            f"{name} uses BasicBlocks, which torchvision cannot dilate; use resnet50 or deeper "
            "for dilation, or last_stride=1"
        )
    if last_stride == 1 and replace[2]:
        raise ModelError(
            f"last_stride=1 contradicts dilation={replace} for {name}: both set how layer4 keeps "
            "its resolution (stride 1 without / with dilation); pass only one of them"
        )

    model = getattr(torchvision.models, name)(
        weights=None, replace_stride_with_dilation=replace, **kwargs
    )
    if last_stride == 1:
        first = model.layer4[0]
        strided = (
            first.conv2 if isinstance(first, torchvision.models.resnet.Bottleneck) else first.conv1
        )
        set_conv_stride(strided, 1)
        first.stride = 1
        if first.downsample is not None:
            set_conv_stride(first.downsample[0], 1)

    expansion = 4 if name not in _BASIC_BLOCK_NAMES else 1
    strides = [4, 4]  # stem and layer1
    for dilate in replace:  # layer2..layer4 halve the map unless dilated
        strides.append(strides[-1] * (1 if dilate else 2))
    if last_stride == 1:
        strides[4] = strides[3]
    layout = [
        StageSpec(
            "stem",
            64,
            4,
            parts=(
                StagePart("conv1", "conv1"),
                StagePart("bn1", "bn1"),
                StagePart("relu", "relu"),
                StagePart("maxpool", "maxpool"),
            ),
        ),
        *(
            StageSpec(f"layer{i}", width * expansion, strides[i], whole=f"layer{i}")
            for i, width in zip(range(1, 5), (64, 128, 256, 512))
        ),
    ]
    return assemble_backbone(
        name, model, layout, mean=IMAGENET_MEAN, std=IMAGENET_STD, head_prefixes=("fc.",)
    )
