"""Building blocks of CCAN (:mod:`attnreid.models.ccan`): the I1 / I2 / I3 cut of a backbone,
the horizontal part stripes, the branch heads and the attention-map read-out.

**Stage mapping.** CCAN's ``I1``, ``I2``, ``I3`` are GoogLeNet's inception groups 3, 4 and 5
(480 / 832 / 1024 channels at output strides 8 / 16 / 32). Any backbone of
:func:`attnreid.models.backbones.build_backbone` is cut the same way, by output stride:
``I1`` = every stage up to stride 8, ``I3`` = the last stage, ``I2`` = the stages in between:

==================  ==================  ===========  ============  ===============
backbone            I1 (stride 8)       I2 (16)      I3 (32)       channels
==================  ==================  ===========  ============  ===============
googlenet           stem, inception3    inception4   inception5    480 / 832 / 1024
mobilenet_v2        stem .. stage2      stage3       stage4        32 / 96 / 1280
efficientnet_lite0  stem .. stage2      stage3       stage4        40 / 112 / 1280
resnet18/34         stem .. layer2      layer3       layer4        128 / 256 / 512
resnet50/101/152    stem .. layer2      layer3       layer4        512 / 1024 / 2048
densenet121         stem .. dblock2     denseblock3  denseblock4   512 / 1024 / 1024
==================  ==================  ===========  ============  ===============

**Part stripes.** The paper slices a map into ``k_p`` equal horizontal stripes
"independently" and resizes each back to the full map size with bilinear interpolation.
:func:`cut_stripes` does this as one linear resampling along the height; output row ``i`` of
stripe ``s`` reads source row ``s H / k_p + (i + 1/2) / k_p - 1/2`` (pixel-centre coordinates,
``align_corners=False``). Two ways to treat the stripe border (option ``stripes``):

* ``"slice"`` (default, the paper's wording): the sampling is clamped to the stripe's own rows,
  ``[s H / k_p, (s + 1) H / k_p - 1]``, so a stripe never reads its neighbours. When ``k_p``
  divides ``H`` this *equals* slicing and ``F.interpolate(mode="bilinear",
  align_corners=False)``; otherwise the stripes have fractional borders and the clamp reads only
  rows that overlap the stripe (a stripe thinner than a row is the value at its centre).
* ``"grid"``: the public code of the same authors, ``F.affine_grid`` with y scale ``1/k_p`` and
  offsets ``-1 + (2s+1)/k_p`` then ``F.grid_sample(mode="bilinear", padding_mode="border",
  align_corners=False)``: identical inside the stripe, but the outer half pixel blends with
  the neighbouring stripe instead of repeating the stripe's edge row.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.models.backbones import Backbone
from attnreid.models.heads import init_classifier
from attnreid.utils.checks import one_of


def split_stages(backbone: Backbone) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential]:
    """Cut ``backbone`` into CCAN's ``I1`` (to stride 8), ``I2`` and ``I3`` (the last stage)."""
    strides = backbone.stage_strides
    n1 = sum(1 for s in strides if s <= 8)
    if n1 < 1 or n1 > len(strides) - 2:
        raise ModelError(
            f"ccan: backbone {backbone.name!r} (stage strides {strides}) cannot be cut into "
            "I1 (stride 8), I2 and I3"
        )
    stages = list(backbone.stages)
    return nn.Sequential(*stages[:n1]), nn.Sequential(*stages[n1:-1]), nn.Sequential(stages[-1])


def stage_channels(backbone: Backbone) -> tuple[int, int, int]:
    """Output channels of ``I1``, ``I2``, ``I3``."""
    n1 = sum(1 for s in backbone.stage_strides if s <= 8)
    ch = backbone.stage_channels
    return ch[n1 - 1], ch[-2], ch[-1]


STRIPE_MODES = ("slice", "grid")


def stripe_matrices(
    height: int,
    parts: int,
    *,
    mode: str = "slice",
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """``(parts, height, height)``: row ``i`` of matrix ``s`` holds the bilinear weights with
    which output row ``i`` of stripe ``s`` (resized to ``height``) reads the input rows."""
    one_of(mode, STRIPE_MODES, "ccan: stripes", ModelError)
    rows = torch.arange(height, dtype=torch.float64)
    stripe = torch.arange(parts, dtype=torch.float64)[:, None]
    src = stripe * height / parts + (rows + 0.5) / parts - 0.5  # (k, H)
    if mode == "slice":
        first = stripe * height / parts  # centre of the stripe's first whole row
        last = (stripe + 1) * height / parts - 1  # ... and of its last one
        centre = (first + last) / 2
        first, last = torch.minimum(first, centre), torch.maximum(last, centre)
        src = torch.maximum(torch.minimum(src, last), first)
    src = src.clamp(0, height - 1)
    lo = src.floor()
    frac = src - lo
    lo_idx = lo.long()
    hi_idx = (lo_idx + 1).clamp(max=height - 1)
    mat = torch.zeros(parts, height, height, dtype=torch.float64)
    mat.scatter_add_(2, lo_idx[..., None], (1 - frac)[..., None])
    mat.scatter_add_(2, hi_idx[..., None], frac[..., None])
    return mat.to(device=device, dtype=dtype)


def cut_stripes(x: Tensor, parts: int, mode: str = "slice") -> Tensor:
    """``(B, C, H, W) -> (parts, B, C, H, W)``: horizontal stripe ``s`` resized to ``H x W``."""
    mat = stripe_matrices(x.shape[2], parts, mode=mode, device=x.device, dtype=x.dtype)
    return torch.einsum("koh,bchw->kbcow", mat, x)


class BranchHead(nn.Module):
    """Pooled branch feature -> (d-dim embedding FC1, logits FC2).

    ``pool_bn``: BatchNorm1d on the pooled feature (the public code normalises the global map
    and the concatenated part maps). ``embed_bn_relu``: FC1 is Linear + BatchNorm1d + ReLU as
    in the public code; ``False`` gives the paper's bare linear FC1.
    """

    def __init__(
        self, in_dim: int, d: int, num_classes: int, *, pool_bn: bool, embed_bn_relu: bool
    ) -> None:
        super().__init__()
        self.pool_bn = nn.BatchNorm1d(in_dim) if pool_bn else nn.Identity()
        fc1: list[nn.Module] = [nn.Linear(in_dim, d)]
        if embed_bn_relu:
            fc1 += [nn.BatchNorm1d(d), nn.ReLU(inplace=True)]
        self.fc1 = nn.Sequential(*fc1)
        self.classifier = nn.Linear(d, num_classes)  # FC2
        init_classifier(self.classifier)

    def forward(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        # pooled: (B, in_dim) -> feat (B, d), logits (B, num_classes)
        feat = self.fc1(self.pool_bn(pooled))
        return feat, self.classifier(feat)
