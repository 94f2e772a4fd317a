"""OSNet backbones (Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification",
ICCV 2019): ``osnet_x1_0``, ``osnet_x0_75``, ``osnet_x0_5``, ``osnet_x0_25``.

What the paper says (Sec. 3 and Table 1):

* **Lite 3x3**: a 3x3 conv factorised into a 1x1 *pointwise* conv followed by a 3x3
  *depthwise* conv (pointwise first, the reverse of MobileNet), then BatchNorm and ReLU.
* **Omni-scale residual block** (``OSBlock``): a 1x1 conv reduces the channels by 4; ``T = 4``
  streams of 1, 2, 3 and 4 Lite 3x3 layers see receptive fields of 3, 5, 7 and 9; the
  **unified aggregation gate** (one mini-network *shared* by all streams: global average
  pooling, FC with reduction 16, ReLU, FC, sigmoid) weights each stream's channels and the
  gated streams are summed; a 1x1 conv with BatchNorm and no ReLU restores the width; the
  shortcut is the identity, or a 1x1 conv + BN when the width changes; ReLU after the sum.
* **Network** (256x128 input): ``conv1`` 7x7 stride 2 (128x64) and 3x3 max pool stride 2
  (64x32); ``conv2`` 2 OSBlocks, then a transition 1x1 conv + 2x2 average pool (32x16);
  ``conv3`` 2 OSBlocks + transition (16x8); ``conv4`` 2 OSBlocks; ``conv5`` 1x1 conv; global
  average pooling; FC to a 512-d feature. Widths 64/256/384/512 at x1.0, multiplied by the
  width multiplier beta in {1, 0.75, 0.5, 0.25} for the smaller networks.

Where the paper is silent, torchreid (the authors' public code) is followed, so that its
model-zoo checkpoints load key for key: every conv is bias-free and followed by BatchNorm
(``conv1``, ``conv5``, the block's first 1x1 and the transitions are conv-BN-ReLU); the
gate's FCs are 1x1 convs with bias and ``channels // 16`` hidden units; the max pool has
padding 1; the first block of each stage changes the width; the 512-d FC and classifier
belong to the re-ID model (:mod:`attnreid.models.osnet`), not to the backbone; the
initialisation is Kaiming-normal (fan-out) for convs, 1/0 for BatchNorm. The parameter names
are torchreid's under the stage names (``conv2.0.gate.fc1.weight`` becomes
``stages.1.0.gate.fc1.weight``), and :meth:`Backbone.load_reference_state_dict` accepts
torchreid's keys directly, skipping its ``fc.*`` and ``classifier.*``.

Stages (the map sizes for a 256x128 input):

=======  ===========================  ==================  ======  =======
stage    modules                      channels at x1.0    stride  map
=======  ===========================  ==================  ======  =======
stem     conv1, maxpool               64                  4       64x32
conv2    2 OSBlocks + transition      256                 8       32x16
conv3    2 OSBlocks + transition      384                 16      16x8
conv4    2 OSBlocks                   512                 16      16x8
conv5    1x1 conv-BN-ReLU             512                 16      16x8
=======  ===========================  ==================  ======  =======

Unlike the ImageNet families, OSNet's final stride is already 16 (``conv4`` does not
downsample). ``last_stride=1`` removes the last downsampling, the 2x2 average pool of
``conv3``'s transition (parameter-free, so every checkpoint still loads): the final stride
becomes 8 (32x16 at 256x128) — a different network from the published one, which is
``last_stride=2``. Dilation is refused.

ImageNet weights: torchreid publishes them on Google Drive only (``OSNET_IMAGENET_URLS``),
which needs a browser-like client; attnreid never downloads them. ``pretrained="imagenet"``
reads torchreid's file name from the torch hub cache, and otherwise asks for the file to be
passed as a path (see :mod:`attnreid.models.backbones.weights`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.models.backbones.base import Family

#: Width multiplier of each registered OSNet.
OSNET_WIDTHS: dict[str, float] = {
    "osnet_x1_0": 1.0,
    "osnet_x0_75": 0.75,
    "osnet_x0_5": 0.5,
    "osnet_x0_25": 0.25,
}
OSNET_NAMES: tuple[str, ...] = tuple(OSNET_WIDTHS)
#: torchreid's ImageNet weights (Google Drive; saved by torchreid as ``<name>_imagenet.pth``).
OSNET_IMAGENET_URLS: dict[str, str] = {
    "osnet_x1_0": "https://drive.google.com/uc?id=1LaG1EJpHrxdAxKnSCJ_i0u-nbxSAeiFY",
    "osnet_x0_75": "https://drive.google.com/uc?id=1uwA9fElHOk3ZogwbeY5GkLI6QPTX70Hq",
    "osnet_x0_5": "https://drive.google.com/uc?id=16DGLbZukvVYgINws8u8deSaOqjybZ83i",
    "osnet_x0_25": "https://drive.google.com/uc?id=1rb8UN5ZzPKRc_xvtHlyDh-cSz88YX9hs",
}
_BASE_CHANNELS = (64, 256, 384, 512)  # conv1, conv2, conv3, conv4 (= conv5) at x1.0
_BLOCKS_PER_STAGE = 2
_STREAMS = 4  # T in the paper
_BOTTLENECK = 4  # the block's 1x1 reduction
_GATE_REDUCTION = 16


def osnet_channels(name: str) -> tuple[int, int, int, int]:
    """Widths of ``conv1``, ``conv2``, ``conv3`` and ``conv4``/``conv5`` of OSNet ``name``."""
    if name not in OSNET_WIDTHS:
        raise ModelError(f"{name!r} is not an OSNet ({', '.join(OSNET_NAMES)})")
    c1, c2, c3, c4 = (int(c * OSNET_WIDTHS[name]) for c in _BASE_CHANNELS)
    return c1, c2, c3, c4


class ConvBNReLU(nn.Sequential):
    """Bias-free ``k x k`` conv, BatchNorm, optional ReLU (torchreid's ``ConvLayer``,
    ``Conv1x1`` and, with ``relu=False``, ``Conv1x1Linear``: keys ``conv.*``, ``bn.*``)."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, relu: bool = True
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            bn=nn.BatchNorm2d(cout),
        )
        if relu:
            layers["relu"] = nn.ReLU(inplace=True)
        super().__init__(layers)


class LiteConv3x3(nn.Module):
    """Lite 3x3: 1x1 pointwise conv (linear), 3x3 depthwise conv, BN, ReLU (channels kept)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, h, w) -> (B, C, h, w)
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class AggregationGate(nn.Module):
    """The unified aggregation gate: ``x * sigmoid(FC(ReLU(FC(GAP(x)))))``, channel-wise.

    The FCs are 1x1 convs with bias (``fc1``: C -> C // 16, ``fc2``: C // 16 -> C) as in
    torchreid; one instance serves all the streams of a block.
    """

    def __init__(self, channels: int, reduction: int = _GATE_REDUCTION) -> None:
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ModelError(f"OSNet gate: {channels} channels cannot be reduced by {reduction}")
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, h, w); gates: (B, C, 1, 1)
        gates = self.fc2(self.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))).sigmoid()
        return x * gates


class OSBlock(nn.Module):
    """Omni-scale residual block ``(B, cin, h, w) -> (B, cout, h, w)``.

    Streams ``conv2a`` .. ``conv2d`` hold 1 .. 4 Lite 3x3 layers (``conv2a`` is a single
    layer, the others ``nn.Sequential``; torchreid's names, hence the checkpoints' keys).
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // _BOTTLENECK
        self.conv1 = ConvBNReLU(cin, mid)
        self.conv2a = LiteConv3x3(mid)
        self.conv2b = nn.Sequential(*(LiteConv3x3(mid) for _ in range(2)))
        self.conv2c = nn.Sequential(*(LiteConv3x3(mid) for _ in range(3)))
        self.conv2d = nn.Sequential(*(LiteConv3x3(mid) for _ in range(_STREAMS)))
        self.gate = AggregationGate(mid)
        self.conv3 = ConvBNReLU(mid, cout, relu=False)
        self.downsample = ConvBNReLU(cin, cout, relu=False) if cin != cout else None

    def streams(self) -> list[nn.Module]:
        """The ``T = 4`` streams, receptive fields 3, 5, 7 and 9."""
        return [self.conv2a, self.conv2b, self.conv2c, self.conv2d]

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, cin, h, w)
        reduced = self.conv1(x)  # (B, mid, h, w), mid = cout / 4
        aggregated = sum(self.gate(stream(reduced)) for stream in self.streams())  # (B, mid, h, w)
        out = self.conv3(aggregated)  # (B, cout, h, w), no ReLU before the sum
        identity = x if self.downsample is None else self.downsample(x)  # (B, cout, h, w)
        return (out + identity).relu()


def _stage(cin: int, cout: int, downsample: bool) -> nn.Sequential:
    """``_BLOCKS_PER_STAGE`` OSBlocks, then (``downsample``) a 1x1 conv + 2x2 average pool."""
    layers: list[nn.Module] = [OSBlock(cin, cout)]
    layers += [OSBlock(cout, cout) for _ in range(1, _BLOCKS_PER_STAGE)]
    if downsample:
        layers.append(nn.Sequential(ConvBNReLU(cout, cout), nn.AvgPool2d(2, stride=2)))
    return nn.Sequential(*layers)


class OSNetTrunk(nn.Module):
    """The convolutional part of OSNet with torchreid's module names (``conv1`` .. ``conv5``);
    :func:`osnet_family` cuts it into the stages of a :class:`Backbone`."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.conv1 = ConvBNReLU(3, c1, kernel=7, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = _stage(c1, c2, downsample=True)
        self.conv3 = _stage(c2, c3, downsample=True)
        self.conv4 = _stage(c3, c4, downsample=False)
        self.conv5 = ConvBNReLU(c4, c4)
        init_osnet(self)


def init_osnet(module: nn.Module) -> None:
    """torchreid's initialisation (the paper gives none): Kaiming-normal fan-out convs with
    zero bias, BatchNorm weight 1 / bias 0, Linear weights N(0, 0.01) with zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def osnet_family(name: str) -> Family:
    """The OSNet backbone ``name`` (``osnet_x1_0`` .. ``osnet_x0_25``), initialised (always:
    cheap). ``last_stride=2`` is the published network (final stride 16); ``last_stride=1``
    drops the average pool of ``conv3``'s transition (final stride 8)."""
    channels = osnet_channels(name)
    c1, c2, c3, c4 = channels
    return Family(
        make=lambda init_weights, dilation: OSNetTrunk(channels),
        stages=(
            ("stem", ("conv1", "maxpool"), c1, 4),
            ("conv2", "conv2", c2, 8),
            ("conv3", "conv3", c3, 16),
            ("conv4", "conv4", c4, 16),
            ("conv5", "conv5", c4, 16),
        ),
        # the 2x2 average pool of conv3's transition (after its blocks); no parameters
        last_downsampling=(f"conv3.{_BLOCKS_PER_STAGE}.1",),
        head_prefixes=("fc.", "classifier."),
    )
