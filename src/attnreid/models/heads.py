"""Re-ID heads shared by the networks.

:class:`BNNeckHead` is the "BNNeck" of Luo et al. (Bag of Tricks, CVPRW 2019): the pooled
feature feeds the triplet loss, a BatchNorm1d with frozen bias normalises it for the
bias-free classifier, and the normalised feature is the test feature.
"""

from __future__ import annotations

from torch import Tensor, nn


def init_classifier(layer: nn.Linear) -> None:
    nn.init.normal_(layer.weight, std=0.001)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class BNNeckHead(nn.Module):
    """(B, D) pooled feature -> (feature before BN, feature after BN, logits)."""

    def __init__(self, in_dim: int, num_classes: int, *, bnneck: bool = True) -> None:
        super().__init__()
        self.bnneck = bnneck
        self.bn = nn.BatchNorm1d(in_dim)
        if bnneck:
            self.bn.bias.requires_grad_(False)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.classifier = nn.Linear(in_dim, num_classes, bias=not bnneck)
        init_classifier(self.classifier)

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # feat: (B, D)
        bn_feat = self.bn(feat) if self.bnneck else feat
        return feat, bn_feat, self.classifier(bn_feat)
