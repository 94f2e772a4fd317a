"""SA-ResNet: self-attention guided feature learning (Li, Jiang, Hwang, KBS 2019).

ResNet-50 (ImageNet) up to ``res5c`` with its original last stride, so a 256x128 image gives
the paper's ``8 x 4 x 2048`` map (Table 1); the self-attention block
(:class:`~attnreid.models.attention.self_attention.SelfAttention`, eqs. 2-6) on that map;
global average pooling to the 2048-d vector ("the feature map of the last level of the
attention model is expanded into a 2048-dimensional vector"; flattening the 8x4x2048 map, as
Sec. 3 words it, would give 65,536 dimensions, so we average over positions), which feeds the
batch-hard triplet loss and a fully connected classifier (label-smoothed cross-entropy), and
is the test feature (no flip averaging: one feature per image, as the paper).

Distance (Sec. 4.2): "the similarity of the two features is calculated by the Euclidean
distance and is normalized to [0, 1]" — how is not said. ``distance_norm`` (all give the
euclidean rankings, hence the same CMC / mAP; they differ in the values reported and fed to
re-ranking):

* ``"query_max"`` (default): each query's distances divided by their largest value. The paper
  reads "each image ... sequentially from the query set", i.e. normalises a query's distances
  over the gallery; and this is the only choice whose values do not depend on which other
  queries are scored in the same call (the blocked evaluator, re-ranking's row blocks and the
  rank-list pictures call :meth:`SAResNet.compute_distance` on subsets of the queries).
  Dividing (rather than min-max) keeps 0 for identical features.
* ``"query_minmax"``: each query's distances min-max scaled (its nearest gallery image is 0).
* ``"global_max"``: divided by the largest entry of the matrix passed in (one global value
  over the whole query x gallery matrix only when the evaluator computes it in one piece).
* ``"none"``: no model distance; the configured ``eval.metric`` is used.

Options (the ablations of the paper are registered names):

* ``attention``: ``"self"`` (the paper's), ``"spatial"`` (Table 3's spatial attention,
  :mod:`~attnreid.models.attention.spatial_attention`) or ``"none"`` (Table 3's plain
  ResNet-50 with the same head);
* ``scores``: ``"softmax"`` (eq. 4) or ``"sigmoid"`` (Table 6);
* ``key_reduction``, ``value_reduction``, ``aggregation``, ``value_relu``, ``scale``,
  ``sigmoid_mean``: the self-attention block's choices where the paper is ambiguous (see its
  docstring); ``qkv_bias`` (default False, eq. 2: ``f(x) = W_f x``): biases in its ``f``, ``g``,
  ``h`` convolutions (checkpoints trained with them still load, see its docstring);
* ``spatial_kernel``, ``spatial_gate``: the spatial attention's 1-D kernel length (default 1)
  and an optional learned gate (default off, as the paper describes it; see its docstring);
* ``backbone``: any :func:`~attnreid.models.backbones.build_backbone` name (the CPU presets use
  ``mobilenet_v2``), ``last_stride`` (2 as the paper; 1 doubles the map);
* ``bnneck``: the paper has none — the classifier (with bias) takes the pooled feature and the
  pooled feature is the test feature; ``True`` adds Luo et al.'s BNNeck (test feature after BN);
* ``distance_norm``: ``"query_max"``, ``"query_minmax"``, ``"global_max"`` or ``"none"``
  (above).

Registered names: ``sa_resnet`` (any backbone), ``sa_resnet50`` (the paper's model),
``sa_resnet50_sigmoid``, ``sa_resnet50_spatial``, ``sa_resnet50_plain``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.models.attention.self_attention import SelfAttention
from attnreid.models.attention.spatial_attention import SpatialAttention
from attnreid.models.backbones import build_backbone
from attnreid.models.heads import BNNeckHead
from attnreid.models.registry import ReIDModel, register_model
from attnreid.utils.checks import one_of
from attnreid.utils.device import eval_mode
from attnreid.utils.distance import compute_distance, normalize_distance

ATTENTIONS = ("self", "spatial", "none")
DISTANCE_NORMS = ("query_max", "query_minmax", "global_max", "none")


class SAResNet(ReIDModel):
    """Backbone -> attention on the last map -> GAP -> classifier (see the module docstring)."""

    own_distance = property(lambda self: self.distance_norm != "none")  # "none": the metric ranks

    def __init__(
        self,
        num_classes: int,
        pretrained: str = "none",
        *,
        backbone: str = "resnet50",
        last_stride: int = 2,
        attention: str = "self",
        scores: str = "softmax",
        key_reduction: int = 8,
        value_reduction: int = 8,
        aggregation: str = "position",
        value_relu: bool = True,
        scale: bool = False,
        sigmoid_mean: bool = True,
        qkv_bias: bool = False,
        spatial_kernel: int = 1,
        spatial_gate: bool = False,
        bnneck: bool = False,
        distance_norm: str = "query_max",
    ) -> None:
        super().__init__()
        one_of(attention, ATTENTIONS, "sa_resnet: attention", ModelError)
        one_of(distance_norm, DISTANCE_NORMS, "sa_resnet: distance_norm", ModelError)
        self.backbone = build_backbone(backbone, pretrained, last_stride=last_stride)
        dim = self.backbone.out_channels
        self.attention_type = attention
        self.attention: nn.Module
        if attention == "self":
            self.attention = SelfAttention(
                dim,
                key_reduction=key_reduction,
                value_reduction=value_reduction,
                scores=scores,
                aggregation=aggregation,
                value_relu=value_relu,
                scale=scale,
                sigmoid_mean=sigmoid_mean,
                qkv_bias=qkv_bias,
            )
        elif attention == "spatial":
            self.attention = SpatialAttention(
                dim, scores=scores, kernel_size=spatial_kernel, gate=spatial_gate
            )
        else:
            self.attention = nn.Identity()
        self.bnneck, self.distance_norm = bnneck, distance_norm
        self.set_output(dim, num_classes, self.backbone)
        self.head = BNNeckHead(dim, num_classes, bnneck=bnneck)

    def feature_map(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W) -> (B, D, h, w)``: the backbone's last map after attention."""
        return self.attention(self.backbone(x))

    def forward(self, x: Tensor) -> Tensor | dict[str, dict[str, Tensor]]:
        # x: (B, 3, H, W)
        pooled = self.feature_map(x).mean(dim=(2, 3))  # (B, D)
        feat, bn_feat, logits = self.head(pooled)
        if not self.training:
            return bn_feat if self.bnneck else feat  # (B, D)
        return {"global": {"feat": feat, "logits": logits}}

    def compute_distance(self, query: Tensor, gallery: Tensor) -> Tensor | None:
        """``(Q, D), (G, D) -> (Q, G)`` euclidean distance normalised to ``[0, 1]``
        (``distance_norm``, see the module docstring); None for ``"none"``."""
        if self.distance_norm == "none":
            return None
        dist = compute_distance(query, gallery, metric="euclidean").sqrt_()  # (Q, G)
        if self.distance_norm == "global_max":
            return normalize_distance(dist)
        hi = dist.amax(dim=1, keepdim=True)  # (Q, 1)
        lo = dist.amin(dim=1, keepdim=True) if self.distance_norm == "query_minmax" else 0.0
        span = hi - lo
        # a row of equal distances (e.g. a one-image gallery) becomes zeros
        return torch.where(span > 0, (dist - lo) / span.clamp_min(1e-12), torch.zeros_like(dist))

    def attention_maps(
        self, x: Tensor, query_point: tuple[float, float] | None = None
    ) -> dict[str, Tensor]:
        """``{"self_attention" | "spatial_attention": (B, h, w)}`` for ``x`` ``(B, 3, H, W)``.

        Self-attention: with ``query_point=(y, x)`` in [0, 1], the scores of the feature cell
        containing the point over all positions; without, the mean score each position
        receives. Spatial attention: its mask (``query_point`` is ignored). Computed in eval
        mode without gradients; the training mode is restored afterwards.
        """
        if self.attention_type == "none":
            raise ModelError(
                f"model {self.model_name or 'sa_resnet'!r} has no attention module "
                "(attention='none'): there are no attention maps to draw"
            )
        with eval_mode(self), torch.no_grad():
            fmap = self.backbone(x)  # (B, D, h, w)
            if isinstance(self.attention, SpatialAttention):
                return {"spatial_attention": self.attention.mask(fmap)}
            assert isinstance(self.attention, SelfAttention)
            return {"self_attention": self.attention.maps(fmap, query_point)}


register_model("sa_resnet")(SAResNet)
register_model("sa_resnet50", backbone="resnet50")(SAResNet)  # Tables 3-7, "Ours"
register_model("sa_resnet50_sigmoid", backbone="resnet50", scores="sigmoid")(SAResNet)  # T. 6
register_model("sa_resnet50_spatial", backbone="resnet50", attention="spatial")(SAResNet)
register_model("sa_resnet50_plain", backbone="resnet50", attention="none")(SAResNet)  # T. 3
