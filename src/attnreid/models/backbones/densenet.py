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
functionally (registered as ``features.relu5`` to end the stage), so the backbone's output is
exactly the map torchvision pools for its classifier (which is dropped). ``last_stride=1``
replaces the last downsampling, the average pooling of ``transition3``
(``features.transition3.pool``), by the identity: 256x128 input then gives a 16x8 map.

Parameter names are torchvision's with ``features.X`` moved to ``stages.S.X``. The key names of
torchvision's ImageNet checkpoint predate the ban on dots in module names
(``denselayer1.norm.1.weight``); they are fixed with torchvision's own pattern.
"""

from __future__ import annotations

from typing import Any

import torchvision
from torch import nn

from attnreid.models.backbones.base import Family

# (stage name, modules under ``features``, output channels, output stride)
_STAGES: tuple[tuple[str, tuple[str, ...], int, int], ...] = (
    ("stem", ("conv0", "norm0", "relu0", "pool0"), 64, 4),
    ("denseblock1", ("denseblock1",), 256, 4),
    ("denseblock2", ("transition1", "denseblock2"), 512, 8),
    ("denseblock3", ("transition2", "denseblock3"), 1024, 16),
    ("denseblock4", ("transition3", "denseblock4", "norm5", "relu5"), 1024, 32),
)
# torchvision.models.densenet._load_state_dict's pattern ("norm.1" -> "norm1" etc.), extended to
# the BatchNorm step counters in case a re-saved old checkpoint has them.
_OLD_KEY_FIXUP = (
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$",
    r"\1\2",
)


def _make(*, init_weights: bool, dilation: None, **options: Any) -> nn.Module:
    del init_weights, dilation  # torchvision always initialises (randomly, its own way)
    model = torchvision.models.densenet121(weights=None, **options)
    # torchvision's forward applies this ReLU functionally; as a module it can end the stage
    model.features.add_module("relu5", nn.ReLU(inplace=True))
    return model


#: ``memory_efficient=True`` (gradient checkpointing inside dense layers) is passed on.
DENSENET121 = Family(
    make=_make,
    stages=tuple(
        (stage, tuple(f"features.{path}" for path in paths), channels, stride)
        for stage, paths, channels, stride in _STAGES
    ),
    options=("memory_efficient",),
    prefix="features.",
    last_downsampling=("features.transition3.pool",),
    head_prefixes=("classifier.",),
    key_fixups=(_OLD_KEY_FIXUP,),
)
