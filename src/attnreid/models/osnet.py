"""OSNet as a re-ID model (Zhou et al., "Omni-Scale Feature Learning for Person
Re-Identification", ICCV 2019), with torchreid's head so that its model-zoo files load as is.

The paper's network ends with global average pooling and a fully connected layer giving a
512-d feature, trained with an identity classifier (cross-entropy; with triplet loss in the
paper's ablations). The paper does not detail the FC; torchreid's is ``Linear`` + ``BatchNorm1d``
+ ``ReLU`` (``fc.0``, ``fc.1``), followed by a biased ``Linear(512, num_classes)``
(``classifier``), and its test feature is the post-ReLU 512-d output of ``fc``. This class keeps
exactly that layout and those names, so the state dict of :class:`OSNetReID` is torchreid's
with the convolutional part under ``backbone.stages.*``:

* eval: ``conv5`` map -> global average pool -> ``fc`` -> ``(B, 512)``, torchreid's test
  feature;
* training: ``{"global": {"feat": (B, 512), "logits": (B, num_classes)}}``, the triplet loss
  on the 512-d feature and cross-entropy on the logits (no BNNeck: the BatchNorm is inside
  ``fc``, before the ReLU, as torchreid has it).

It is a class of its own rather than :class:`attnreid.models.baseline.Baseline`, whose BNNeck
head (BatchNorm after the pooled feature, bias-free classifier, BN feature at test time)
differs from torchreid's layout at every step.

``pretrained`` is ``"none"``, ``"imagenet"`` (torchreid's ImageNet file from the hub cache, see
:mod:`attnreid.models.backbones.weights`) or the path of a torchreid file such as
``osnet_x0_25_msmt17.pth`` (bare or under ``state_dict``, with or without ``module.``): the
backbone loads strictly, ``fc`` loads when the file has it (a file without ``fc`` leaves it
initialised and says so), and the classifier loads only if it has this model's identity count,
otherwise it is skipped with a printed note (fine-tuning on another data set).

``plugin`` inserts one paper's attention module into the network with its trained head kept,
as a residual branch that starts at zero (:mod:`attnreid.models.plugins`): ``sona2``, ``ccan``,
``sa`` or ``duatm``; the untrained plug-in network gives exactly the plain network's features.

Registered names: ``osnet_x1_0``, ``osnet_x0_75``, ``osnet_x0_5``, ``osnet_x0_25``, and the
plug-ins on OSNet x0.25: ``osnet_x0_25_{sona2,ccan,sa,duatm}_plugin``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.models.backbones import build_backbone
from attnreid.models.backbones.osnet import OSNET_NAMES, init_osnet
from attnreid.models.backbones.weights import resolve_pretrained_with_source
from attnreid.models.duatm import RANK_WITH
from attnreid.models.plugins import PLUGINS, StripeCrossAttention, build_plugins
from attnreid.models.registry import ReIDModel, register_model
from attnreid.utils.checks import one_of

_FEATURE_DIM = 512  # the paper's and torchreid's embedding size
_OPTIONAL_SUFFIX = "num_batches_tracked"


class OSNetReID(ReIDModel):
    """OSNet backbone, global average pooling, torchreid's ``fc`` embedding and classifier.

    Args:
        num_classes: training identities (size of ``classifier``).
        pretrained: ``"none"``, ``"imagenet"`` or a weights file (see the module docstring).
        backbone: the OSNet width (``osnet_x1_0`` .. ``osnet_x0_25``); set by the registered
            names.
        last_stride: 2 is the published network (16x8 map at 256x128); 1 drops ``conv3``'s
            average pool (32x16), see :mod:`attnreid.models.backbones.osnet`.
        plugin: ``"none"`` or an attention plug-in (:data:`~attnreid.models.plugins.PLUGINS`).
        rank_with: with the ``duatm`` plug-in, what a test ranks with: ``"matching"`` (the
            DuATM distance; the test output is the flattened sequence) or ``"feature"``.
        input_size: the images' ``(H, W)``, which the ``ccan`` plug-in's attention is built for
            (set by the engine from ``data.height`` / ``data.width``).
    """

    own_distance = property(lambda self: self.duatm is not None and self.rank_with == "matching")

    def __init__(
        self,
        num_classes: int,
        pretrained: str = "none",
        backbone: str = "osnet_x1_0",
        last_stride: int = 2,
        plugin: str = "none",
        rank_with: str = "matching",
        input_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        one_of(backbone, OSNET_NAMES, "osnet: backbone", ModelError)
        one_of(plugin, PLUGINS, "osnet: plugin", ModelError)
        self.rank_with = one_of(rank_with, RANK_WITH, "osnet: rank_with", ModelError)
        self.backbone = build_backbone(backbone, "none", last_stride=last_stride)
        self.set_output(_FEATURE_DIM, num_classes, self.backbone)
        self.fc = nn.Sequential(
            nn.Linear(self.backbone.out_channels, _FEATURE_DIM),
            nn.BatchNorm1d(_FEATURE_DIM),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(_FEATURE_DIM, num_classes)
        init_osnet(self.fc)
        init_osnet(self.classifier)
        state, source = resolve_pretrained_with_source(backbone, pretrained)
        if state is not None:
            self.backbone.load_reference_state_dict(state, source)
            self._load_head(state, source)
        # after the weights: the ccan plug-in's part stream starts as a copy of the backbone's
        self.plugin = plugin
        self.plugins, self.duatm = build_plugins(plugin, self.backbone, num_classes, input_size)

    def feature_map(self, x: Tensor) -> Tensor:
        """The backbone with the plug-in modules after their stages: ``(B, 3, H, W) ->
        (B, C, H/16, W/16)``, C = 512 * width."""
        maps: list[Tensor] = []
        for index, stage in enumerate(self.backbone.stages):
            x = stage(x)
            module = self.plugins[str(index)] if str(index) in self.plugins else None  # noqa: SIM401
            if isinstance(module, StripeCrossAttention):
                x = module(x, maps[module.source])
            elif module is not None:
                x = module(x)
            maps.append(x)
        return x

    def forward(self, x: Tensor) -> Tensor | dict[str, dict[str, Tensor]]:
        # x: (B, 3, H, W)
        fmap = self.feature_map(x)  # (B, C, h, w)
        feat = self.fc(fmap.mean(dim=(2, 3)))  # (B, C) -> (B, 512), after BN and ReLU
        if not self.training:
            if self.own_distance:  # the DuATM plug-in ranks with its matching distance
                return self.duatm.sequence(fmap).flatten(1)  # (B, S * D)
            return feat  # (B, 512), torchreid's test feature
        out = {"global": {"feat": feat, "logits": self.classifier(feat)}}  # logits: (B, N)
        if self.duatm is not None:
            out["duatm"] = self.duatm.train_output(fmap)
        return out

    def compute_distance(self, query: Tensor, gallery: Tensor) -> Tensor:
        """The DuATM plug-in's matching distance ``(Q, G)`` of flattened sequences."""
        if self.duatm is None:
            raise ModelError(f"{self.model_name}: only the duatm plug-in has its own distance")
        return self.duatm.distance(query, gallery)

    # ------------------------------------------------------------------ weight loading
    def _load_head(self, state: Mapping[str, Tensor], source: str) -> None:
        """Load ``fc.*`` (all or nothing) and ``classifier.*`` (if the sizes match)."""
        if _load_part(self.fc, "fc.", state, source, required=False) is None:
            print(
                f"note: {source} has no fc embedding; the fc of {self.backbone.name} stays "
                "randomly initialised",
                file=sys.stderr,
            )
        if not any(k.startswith("classifier.") for k in state):
            return
        shape = _shape_of(state, "classifier.weight")
        if shape == tuple(self.classifier.weight.shape):
            _load_part(self.classifier, "classifier.", state, source, required=True)
        else:
            got = shape[0] if shape else "?"
            print(
                f"note: skipped the classifier of {source} ({got} identities; this model "
                f"has {self.num_classes}), it stays randomly initialised",
                file=sys.stderr,
            )


def _shape_of(state: Mapping[str, Tensor], key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    return tuple(value.shape) if isinstance(value, Tensor) else None


def _load_part(
    module: nn.Module, prefix: str, state: Mapping[str, Tensor], source: str, *, required: bool
) -> nn.Module | None:
    """Load the ``prefix``-ed keys of ``state`` into ``module``, every tensor with its shape.

    Returns ``None`` (nothing loaded) when ``state`` has no such key and ``required`` is false.
    """
    part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not part and not required:
        return None
    own = module.state_dict()
    missing = [k for k in own if k not in part and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in part if k not in own]
    if missing or unexpected:
        which = f"missing {prefix}{missing[0]}" if missing else f"unknown {prefix}{unexpected[0]}"
        raise ModelError(f"{source}: the {prefix.rstrip('.')} layer does not fit ({which})")
    for key, value in part.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ModelError(
                f"{source}: {prefix}{key} has shape {list(value.shape)} in the file but "
                f"{list(own[key].shape)} in the model"
            )
    with torch.no_grad():
        module.load_state_dict(part, strict=False)
    return module


for _name in OSNET_NAMES:
    register_model(_name, backbone=_name)(OSNetReID)
for _plugin in PLUGINS[1:]:
    register_model(f"osnet_x0_25_{_plugin}_plugin", backbone="osnet_x0_25", plugin=_plugin)(
        OSNetReID
    )
