"""DenseNet-121 backbone over torchvision's ``densenet121``.

Stages end at the dense-block outputs, the maps DuATM's attention works on; each transition
(BN-ReLU-1x1 conv halving the channels, then 2x2 average pooling) opens the following stage:

===========  ========================================  ========  ======
stage        torchvision modules (under ``features``)  channels  stride
===========  ========================================  ========  ======
stem         conv0, norm0, relu0, pool0                64        4
denseblock1  denseblock1                               256       4
denseblock2  transition1, denseblock2                  512       8
denseblock3  transition2, denseblock3                  1024      16
denseblock4  transition3, denseblock4, norm5, ReLU     1024      32
===========  ========================================  ========  ======

The last stage ends with ``norm5`` and the ReLU that torchvision's ``forward`` applies
functionally, so the backbone's output is exactly the map torchvision pools for its classifier
(which is dropped). ``last_stride=1`` replaces the last downsampling, the average pooling of
``transition3`` (``features.transition3.pool``), by the identity: 256x128 input then gives a
16x8 map.

Parameter names are torchvision's with ``features.X`` moved to ``stages.S.X``. The key names of
torchvision's ImageNet checkpoint predate the ban on dots in module names
(``denselayer1.norm.1.weight``); they are fixed with torchvision's own pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torchvision
from torch import nn

from attnreid.models.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    StagePart,
    StageSpec,
    assemble_backbone,
    check_last_stride,
    check_no_dilation,
    reject_options,
)

# (stage name, modules under ``features``, output channels, output stride)
_STAGES: tuple[tuple[str, tuple[str, ...], int, int], ...] = (
    ("stem", ("conv0", "norm0", "relu0", "pool0"), 64, 4),
    ("denseblock1", ("denseblock1",), 256, 4),
    ("denseblock2", ("transition1", "denseblock2"), 512, 8),
    ("denseblock3", ("transition2", "denseblock3"), 1024, 16),
    ("denseblock4", ("transition3", "denseblock4", "norm5"), 1024, 32),
)
_OPTIONS = ("memory_efficient",)
# torchvision.models.densenet._load_state_dict's pattern ("norm.1" -> "norm1" etc.), extended to
# the BatchNorm step counters in case a re-saved old checkpoint has them.
_OLD_KEY_FIXUP = (
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$",
    r"\1\2",
)


def build_densenet121(
    name: str = "densenet121",
    *,
    last_stride: int = 2,
    dilation: bool | Sequence[bool] = False,
    init_weights: bool = True,
    **kwargs: Any,
) -> Backbone:
    """Build the DenseNet-121 backbone (randomly initialised the torchvision way).

    ``memory_efficient=True`` (gradient checkpointing inside dense layers) is passed on.
    """
    del init_weights  # torchvision always initialises
    reject_options(name, kwargs, _OPTIONS)
    check_last_stride(name, last_stride)
    check_no_dilation(name, dilation)
    model = torchvision.models.densenet121(weights=None, **kwargs)
    if last_stride == 1:
        model.features.transition3.pool = nn.Identity()
    layout = []
    for stage_name, paths, channels, stride in _STAGES:
        parts = [StagePart(path, f"features.{path}") for path in paths]
        if stage_name == "denseblock4":
            parts.append(StagePart("relu5", None, nn.ReLU(inplace=True)))
            if last_stride == 1:
                stride //= 2
        layout.append(StageSpec(stage_name, channels, stride, parts=tuple(parts)))
    return assemble_backbone(
        name,
        model,
        layout,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        head_prefixes=("classifier.",),
        key_fixups=(_OLD_KEY_FIXUP,),
    )
