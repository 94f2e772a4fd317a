"""GoogLeNet (Inception v1, with BatchNorm) backbone over torchvision's ``googlenet``.

Stages end at the inception groups CCAN splits the network into (its I1, I2, I3):

==========  ===================================================  ========  ======
stage       torchvision modules                                  channels  stride
==========  ===================================================  ========  ======
stem        conv1, maxpool1, conv2, conv3, maxpool2              192       8
inception3  inception3a, inception3b                             480       8
inception4  maxpool3, inception4a .. inception4e                 832       16
inception5  maxpool4, inception5a, inception5b                   1024      32
==========  ===================================================  ========  ======

CCAN's I1 is ``stem`` followed by ``inception3``; I2 and I3 are ``inception4`` and
``inception5``, which it copies for its part streams. The network is built with
``aux_logits=False`` (the auxiliary heads are dropped, as are dropout and ``fc``) and
``transform_input=False``: torchvision's ImageNet weights were ported from TensorFlow and
expect inputs normalised with mean = std = (0.5, 0.5, 0.5), which torchvision emulates by
re-normalising ImageNet-normalised inputs inside ``forward``; this backbone instead declares
``mean``/``std`` = 0.5 so the data pipeline normalises that way directly (same numbers).

``last_stride=1`` replaces the last downsampling, ``maxpool4`` (2x2, stride 2), by the
identity: 256x128 input then gives a 16x8 map.

**The "5x5" branch is a 3x3 convolution.** In GoogLeNet (Szegedy et al. 2015) the third
branch of every inception block is a 1x1 reduction followed by a 5x5 convolution; in
torchvision's ``Inception`` that branch (``branch3``) is a 1x1 followed by a *3x3*
convolution (padding 1), although its arguments are still named ``ch5x5red`` / ``ch5x5``.
torchvision's ImageNet weights — the only ImageNet GoogLeNet-with-BatchNorm weights this
package can load, and the ones CCAN's presets use ("GoogLeNet-V1 with Batch Normalization
pretrained on ImageNet") — were ported from TensorFlow-Slim's ``inception_v1``, which has a 3x3
kernel there (pytorch/vision issue #906); a 5x5 layer could not take them. We keep
torchvision's layer so that the pretrained weights load: each block's widest branch sees 3x3
instead of 5x5 (a smaller receptive field than the paper's network), in every preset built on
this backbone, pretrained or not (so a run from scratch has the same architecture).
"""

from __future__ import annotations

import torchvision

from attnreid.models.backbones.base import HALF_MEAN_STD, Family

# (stage name, torchvision modules, output channels, output stride)
_STAGES: tuple[tuple[str, tuple[str, ...], int, int], ...] = (
    ("stem", ("conv1", "maxpool1", "conv2", "conv3", "maxpool2"), 192, 8),
    ("inception3", ("inception3a", "inception3b"), 480, 8),
    (
        "inception4",
        ("maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e"),
        832,
        16,
    ),
    ("inception5", ("maxpool4", "inception5a", "inception5b"), 1024, 32),
)
#: ``init_weights=True``: the convs get torchvision's truncated-normal initialisation;
#: ``False`` (used when pretrained weights are loaded anyway) skips it.
GOOGLENET = Family(
    make=lambda init_weights, dilation: torchvision.models.googlenet(
        weights=None, aux_logits=False, transform_input=False, init_weights=init_weights
    ),
    stages=_STAGES,
    last_downsampling=("maxpool4",),
    mean=HALF_MEAN_STD,
    std=HALF_MEAN_STD,
    head_prefixes=("fc.", "aux1.", "aux2."),
)
