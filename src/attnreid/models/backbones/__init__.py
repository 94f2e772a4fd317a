"""ImageNet backbones cut into stages, so attention modules can be inserted between them.

>>> from attnreid.models.backbones import build_backbone
>>> net = build_backbone("resnet50", "none", last_stride=1)
>>> net.stage_names
['stem', 'layer1', 'layer2', 'layer3', 'layer4']

Every backbone is a :class:`Backbone`: ``stages[0]`` is the stem, the other entries the network's
stages; ``forward`` chains them and ``forward_stages`` returns every stage's output. ``mean`` and
``std`` give the input normalisation the weights expect. ``pretrained`` is ``"none"``,
``"imagenet"`` or a local file (see :mod:`attnreid.models.backbones.weights`).
"""

from __future__ import annotations

from attnreid.models.backbones.base import Backbone
from attnreid.models.backbones.registry import build_backbone, list_backbones
from attnreid.models.backbones.weights import resolve_pretrained

__all__ = ["Backbone", "build_backbone", "list_backbones", "resolve_pretrained"]
