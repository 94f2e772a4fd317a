"""The reference re-ID baseline: a backbone, global pooling, a BNNeck and a classifier.

This is the strong baseline of Luo et al. ("Bag of Tricks and a Strong Baseline for Deep
Person Re-identification", CVPRW 2019), the usual starting point of torchreid / fast-reid
users: ResNet-50 with last stride 1 (a 16x8 map at 256x128), global average pooling, a
BatchNorm neck, a bias-free classifier; triplet loss on the pooled feature, label-smoothed
cross-entropy on the logits; the BN-normalised feature at test time.

Registered names: ``baseline`` (any backbone, ``backbone=...``) and one name per backbone
(``resnet50``, ``resnet18``, ``mobilenet_v2``, ``efficientnet_lite0`` ...).
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnreid.errors import ModelError
from attnreid.models.backbones import build_backbone
from attnreid.models.heads import BNNeckHead
from attnreid.models.registry import ReIDModel, register_model
from attnreid.utils.checks import one_of


class Baseline(ReIDModel):
    def __init__(
        self,
        num_classes: int,
        pretrained: str = "none",
        backbone: str = "resnet50",
        last_stride: int = 1,
        pooling: str = "avg",
        bnneck: bool = True,
        eval_feature: str = "after_bn",
    ) -> None:
        super().__init__()
        one_of(pooling, ("avg", "max"), "baseline: pooling", ModelError)
        one_of(eval_feature, ("after_bn", "before_bn"), "baseline: eval_feature", ModelError)
        self.backbone = build_backbone(backbone, pretrained, last_stride=last_stride)
        self.pooling, self.eval_feature = pooling, eval_feature
        self.set_output(self.backbone.out_channels, num_classes, self.backbone)
        self.head = BNNeckHead(self.feature_dim, num_classes, bnneck=bnneck)

    def pool(self, fmap: Tensor) -> Tensor:
        # fmap: (B, C, h, w) -> (B, C)
        if self.pooling == "avg":
            return fmap.mean(dim=(2, 3))
        return torch.amax(fmap, dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor | dict[str, dict[str, Tensor]]:
        # x: (B, 3, H, W)
        feat, bn_feat, logits = self.head(self.pool(self.backbone(x)))
        if not self.training:
            return bn_feat if self.eval_feature == "after_bn" else feat  # (B, D)
        return {"global": {"feat": feat, "logits": logits}}


register_model("baseline")(Baseline)
for _name in (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "mobilenet_v2",
    "efficientnet_lite0",
):
    register_model(_name, backbone=_name)(Baseline)
