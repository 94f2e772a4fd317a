"""SONA-Net (Xia, Gong, Zhang, Poellabauer, "Second-order Non-local Attention Networks for
Person Re-identification", ICCV 2019), with every variant of its ablation (Table 5).

Network (section 2.1 and Fig. 2; the head follows BFE, Dai et al., arXiv 1811.07130, whose
"general architecture" section 2.1 says it shares: where the paper leaves a layer out, it is as
the BFE authors' public code builds it)::

    image (B, 3, 384, 128)
      -> ResNet-50, stages 3 and 4 dilated (stride 8)        (B, 2048, 48, 16)
         [SONA after stage 2 and/or stage 3: sona_stages]
      global branch: [SONA] -> GAP -> Conv1x1(2048->512) -> BN -> ReLU        (B, 512)
                     -> Linear(512, C)
      local branch:  [SONA] -> Bottleneck(2048, 512) -> drop -> GMP          (B, 2048)
                     -> Linear(2048->1024) -> BN1d -> ReLU                   (B, 1024)
                     -> Linear(1024, C)
    test feature: concat(global, local)                                      (B, 1536)

Each branch is trained with batch-hard triplet (soft margin) and label-smoothed cross-entropy
on its post-ReLU feature (no BNNeck); configure ``loss`` with ``branches: [global, local]``.
Flip averaging of the test feature is done by the evaluation (``eval.flip``).

Options (``build_model("sona_net", C, pretrained, **options)``):

* ``backbone`` (``resnet50``): any :func:`~attnreid.models.backbones.build_backbone` name.
  "SONA after stage k" means after ``backbone.stages[k]`` (``stages[0]`` is the stem):
  ResNets ``layer2`` (conv3_x: 512 channels, 48 x 16 at 384 x 128) / ``layer3`` (conv4_x,
  1024 channels, 48 x 16 once dilated). The paper's "stage 2" is ``layer2`` because its dilated
  stages 3 and 4 "share the same spatial size with the original stage 2 ... but with doubled
  number of output channels" (512 -> 1024 -> 2048) and its stage 4 ends the backbone.
  MobileNetV2 ``stage2`` (``features.4-6``, 32 ch, stride 8) / ``stage3`` (``features.7-13``,
  96 ch, stride 16); EfficientNet-Lite0 ``stage2`` (``blocks.2``, 40 ch, stride 8) /
  ``stage3`` (``blocks.3-4``, 112 ch, stride 16).
* ``dilation`` (``None``): ``None`` dilates stages 3 and 4 where torchvision can (ResNet-50 /
  101 / 152: output stride 8, a 48 x 16 map at 384 x 128); other backbones cannot be dilated
  and use ``last_stride`` instead (``1``: output stride 16). ``False`` turns dilation off.
* ``sona_stages`` (``[2]``): stage indices followed by a SONA module (``[2]``, ``[3]``,
  ``[2, 3]``, or ``[]``); any stage but the stem and the last.
* ``sona_head`` (``none``): SONA right after the last stage on the ``global`` branch, the
  ``local`` branch (before the bottleneck), or ``both`` (one module per branch) - the
  paper's negative-result placements.
* ``sona_reduction`` (2), ``sona_impl`` (``fused`` | ``literal``), ``sona_zero_init`` (True),
  ``sona_negative_slope`` (0.01, the LeakyReLU of theta; the paper gives none): see
  :mod:`attnreid.models.attention.sona`.
* ``drop`` (``dropblock_plus``): ``none`` | ``dropblock`` | ``dropblock_plus`` | ``bfe``, on
  the local branch after the bottleneck; ``drop_prob`` (0.1), ``block_size`` (``None``: 5 for
  DropBlock, [5, 8] = height x width for DropBlock+), ``gamma_mode`` (``drop_prob`` | ``rate``),
  ``drop_rescale`` (True), ``drop_ramp_steps`` (0: the paper's fixed gamma; N: Ghiasi et al.'s
  linear ramp over N training steps), ``bfe_ratio`` ([0.33, 1.0]); see
  :mod:`attnreid.models.drop`.
* ``global_dim`` (512), ``local_dim`` (1024): the two embedding sizes.

Initialisation (the paper is silent; the Batch-DropBlock code's): reduction convs and linears
Kaiming-normal (fan-in for convs, fan-out for linears, classifiers included), BatchNorm weights
N(1, 0.02), biases 0; the local bottleneck keeps PyTorch's default init, as that code builds
a fresh ``Bottleneck(2048, 512)``. The stage-4 placements are read as SONA-Net (BL + DB+)
with SONA moved from the early stages to after stage 4 (``sona_stages=[]``).

Registered names and their defaults (Table 5 row -> name): BL ``sona_bl``; BL+DB
``sona_bl_db``; BL+DB+ ``sona_bl_dbplus``; BL+BFE ``sona_bl_bfe``; BL+SONA2 ``sona_bl_sona2``;
BL+BFE+SONA2 ``sona_bl_bfe_sona2``; SONA2-Net ``sona_net`` = ``sona2_net``; SONA3-Net
``sona3_net``; SONA2+3-Net ``sona23_net``; stage-4 placements ``sona4_global_net``,
``sona4_local_net``, ``sona4_both_net``. Every option can still be overridden.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck

from attnreid.errors import ModelError
from attnreid.models.attention.sona import IMPLEMENTATIONS, SONA, attention_map
from attnreid.models.backbones import build_backbone
from attnreid.models.drop import DROP_METHODS, GAMMA_MODES, build_drop
from attnreid.models.registry import ReIDModel, register_model
from attnreid.utils.checks import one_of, positive_int
from attnreid.utils.device import eval_mode

DILATABLE = ("resnet50", "resnet101", "resnet152")
SONA_HEADS = ("none", "global", "local", "both")


def _init_head(module: nn.Module) -> None:
    """The Batch-DropBlock code's ``weights_init_kaiming``."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_out")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _sona_stage_list(value: Any) -> list[int]:
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(items, str) or not isinstance(items, Sequence):
        raise ModelError(f"sona_net: sona_stages must be a list of stage indices, got {value!r}")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise ModelError(f"sona_net: sona_stages must hold integers, got {value!r}")
    if len(set(items)) != len(items):
        raise ModelError(f"sona_net: sona_stages lists a stage twice: {value!r}")
    return sorted(items)


class SONANet(ReIDModel):
    """The SONA-Net family; see the module docstring for the options."""

    def __init__(
        self,
        num_classes: int,
        pretrained: str = "none",
        *,
        backbone: str = "resnet50",
        dilation: bool | None = None,
        last_stride: int = 1,
        sona_stages: Sequence[int] = (2,),
        sona_head: str = "none",
        sona_reduction: int = 2,
        sona_impl: str = "fused",
        sona_zero_init: bool = True,
        sona_negative_slope: float = 0.01,
        drop: str = "dropblock_plus",
        drop_prob: float = 0.1,
        block_size: int | Sequence[int] | None = None,
        gamma_mode: str = "drop_prob",
        drop_rescale: bool = True,
        drop_ramp_steps: int = 0,
        bfe_ratio: Sequence[float] = (0.33, 1.0),
        global_dim: int = 512,
        local_dim: int = 1024,
    ) -> None:
        super().__init__()
        # Validate everything cheap before the backbone (and its weights) is built.
        stages = _sona_stage_list(sona_stages)
        one_of(sona_head, SONA_HEADS, "sona_net: sona_head", ModelError)
        one_of(sona_impl, IMPLEMENTATIONS, "sona_net: sona_impl", ModelError)
        one_of(drop, DROP_METHODS, "sona_net: drop", ModelError)
        one_of(gamma_mode, GAMMA_MODES, "sona_net: gamma_mode", ModelError)
        if dilation is not None and not isinstance(dilation, bool):
            raise ModelError(f"sona_net: dilation must be true, false or null, got {dilation!r}")
        positive_int(sona_reduction, "sona_net: sona_reduction", ModelError)
        positive_int(global_dim, "sona_net: global_dim", ModelError)
        positive_int(local_dim, "sona_net: local_dim", ModelError)
        drop_module = build_drop(
            drop,
            drop_prob=drop_prob,
            block_size=block_size,
            gamma_mode=gamma_mode,
            rescale=drop_rescale,
            ramp_steps=drop_ramp_steps,
            bfe_ratio=bfe_ratio,
        )

        dilate = (backbone in DILATABLE) if dilation is None else dilation
        size: dict[str, Any] = {"dilation": True} if dilate else {"last_stride": last_stride}
        self.backbone = build_backbone(backbone, pretrained, **size)
        last = len(self.backbone.stages) - 1
        bad = [s for s in stages if not 1 <= s < last]
        if bad:
            raise ModelError(
                f"sona_net: sona_stages {bad} out of range for {backbone} (stages "
                f"{self.backbone.stage_names}); use 1..{last - 1}, or sona_head for stage {last}"
            )
        channels = self.backbone.stage_channels
        out = self.backbone.out_channels
        if out % Bottleneck.expansion:
            raise ModelError(f"sona_net: {backbone} has {out} output channels, not a multiple of 4")

        def make_sona(c: int) -> SONA:
            return SONA(
                c,
                sona_reduction,
                impl=sona_impl,
                negative_slope=sona_negative_slope,
                zero_init=sona_zero_init,
            )

        self.sona = nn.ModuleDict({f"sona{s}": make_sona(channels[s]) for s in stages})
        self.sona_stages, self.sona_head = stages, sona_head
        self._head_keys = {
            branch: f"sona{last}_{branch}"
            for branch in ("global", "local")
            if sona_head in (branch, "both")
        }
        for key in self._head_keys.values():
            self.sona[key] = make_sona(out)

        self.global_reduction = nn.Sequential(
            nn.Conv2d(out, global_dim, 1), nn.BatchNorm2d(global_dim), nn.ReLU()
        )
        self.global_classifier = nn.Linear(global_dim, num_classes)
        self.local_block = Bottleneck(out, out // Bottleneck.expansion)
        self.drop = drop_module
        self.local_reduction = nn.Sequential(
            nn.Linear(out, local_dim), nn.BatchNorm1d(local_dim), nn.ReLU()
        )
        self.local_classifier = nn.Linear(local_dim, num_classes)
        for head in (
            self.global_reduction,
            self.global_classifier,
            self.local_reduction,
            self.local_classifier,
        ):
            _init_head(head)

        self.set_output(global_dim + local_dim, num_classes, self.backbone)

    # ------------------------------------------------------------------ forward
    def feature_map(self, x: Tensor) -> Tensor:
        """Backbone with the SONA modules after their stages: ``(B, 3, H, W) -> (B, C, h, w)``."""
        for index, stage in enumerate(self.backbone.stages):
            x = stage(x)
            key = f"sona{index}"
            if key in self.sona:
                x = self.sona[key](x)
        return x

    def _branch_input(self, fmap: Tensor, branch: str) -> Tensor:
        key = self._head_keys.get(branch)
        return fmap if key is None else self.sona[key](fmap)

    def forward(self, x: Tensor) -> Tensor | dict[str, dict[str, Tensor]]:
        # x: (B, 3, H, W)
        fmap = self.feature_map(x)  # (B, C, h, w)
        pooled = self._branch_input(fmap, "global").mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        glob = self.global_reduction(pooled).flatten(1)  # (B, global_dim)
        part = self.drop(self.local_block(self._branch_input(fmap, "local")))  # (B, C, h, w)
        local = self.local_reduction(torch.amax(part, dim=(2, 3)))  # (B, local_dim)
        if not self.training:
            return torch.cat([glob, local], dim=1)  # (B, global_dim + local_dim)
        return {
            "global": {"feat": glob, "logits": self.global_classifier(glob)},
            "local": {"feat": local, "logits": self.local_classifier(local)},
        }

    # ------------------------------------------------------------------ visualisation
    @torch.no_grad()
    def attention_maps(
        self, x: Tensor, query_point: tuple[float, float] | None = None
    ) -> dict[str, Tensor]:
        """A ``(B, h, w)`` map per SONA module (``sona2``, ``sona3``, ``sona4_global``, ...),
        in eval mode: with ``query_point=(y, x)`` in [0, 1], the attention of the nearest
        position over all positions; without, the mean attention each position receives.
        A network without SONA returns an empty dict."""
        maps: dict[str, Tensor] = {}

        def record(key: str, inp: Tensor) -> None:
            h, w = inp.shape[-2:]
            maps[key] = attention_map(self.sona[key].attention(inp), h, w, query_point)

        with eval_mode(self):
            for index, stage in enumerate(self.backbone.stages):
                x = stage(x)
                key = f"sona{index}"
                if key in self.sona:
                    record(key, x)
                    x = self.sona[key](x)
            for key in self._head_keys.values():
                record(key, x)
        return maps


# Table 5 of the paper: name -> (SONA stages, drop module, stage-4 placement)
VARIANTS: dict[str, dict[str, Any]] = {
    "sona_net": {},  # SONA2-Net: the factory defaults
    "sona2_net": {"sona_stages": [2], "drop": "dropblock_plus"},
    "sona3_net": {"sona_stages": [3], "drop": "dropblock_plus"},
    "sona23_net": {"sona_stages": [2, 3], "drop": "dropblock_plus"},
    "sona_bl": {"sona_stages": [], "drop": "none"},
    "sona_bl_db": {"sona_stages": [], "drop": "dropblock"},
    "sona_bl_dbplus": {"sona_stages": [], "drop": "dropblock_plus"},
    "sona_bl_bfe": {"sona_stages": [], "drop": "bfe"},
    "sona_bl_sona2": {"sona_stages": [2], "drop": "none"},
    "sona_bl_bfe_sona2": {"sona_stages": [2], "drop": "bfe"},
    "sona4_global_net": {"sona_stages": [], "sona_head": "global", "drop": "dropblock_plus"},
    "sona4_local_net": {"sona_stages": [], "sona_head": "local", "drop": "dropblock_plus"},
    "sona4_both_net": {"sona_stages": [], "sona_head": "both", "drop": "dropblock_plus"},
}

for _name, _defaults in VARIANTS.items():
    register_model(_name, **_defaults)(SONANet)
