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

import torchvision

from attnreid.errors import ModelError
from attnreid.models.backbones.base import Family

RESNET_NAMES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_BASIC_BLOCK_NAMES = frozenset({"resnet18", "resnet34"})


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


def _check_dilation(name: str, dilation: bool | Sequence[bool], last_stride: int) -> list[bool]:
    """:func:`resolve_dilation`, refusing what torchvision cannot build or what contradicts
    ``last_stride``."""
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
    return replace


def resnet_family(name: str) -> Family:
    """The ResNet backbone ``name``, randomly initialised the torchvision way (always: cheap)."""
    if name not in RESNET_NAMES:
        raise ModelError(f"{name!r} is not a resnet backbone ({', '.join(RESNET_NAMES)})")
    basic = name in _BASIC_BLOCK_NAMES
    expansion = 1 if basic else 4
    strided = "layer4.0.conv1" if basic else "layer4.0.conv2"  # the block's strided 3x3 conv
    return Family(
        make=lambda init_weights, dilation, **options: getattr(torchvision.models, name)(
            weights=None, replace_stride_with_dilation=dilation, **options
        ),
        stages=(
            ("stem", ("conv1", "bn1", "relu", "maxpool"), 64, 4),
            *(
                (f"layer{i}", f"layer{i}", width * expansion, stride)
                for i, width, stride in zip(range(1, 5), (64, 128, 256, 512), (4, 8, 16, 32))
            ),
        ),
        options=("zero_init_residual",),
        # layer4's first block: its strided 3x3 conv and the 1x1 conv of its shortcut
        last_downsampling=(strided, "layer4.0.downsample.0"),
        resolve_dilation=_check_dilation,
        dilatable=("layer2", "layer3", "layer4"),
        head_prefixes=("fc.",),
    )
