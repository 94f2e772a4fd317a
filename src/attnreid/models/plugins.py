"""Attention modules as plug-ins on a trained re-ID network: each starts as the identity.

A plug-in inserts one paper's attention module where its paper puts it into a network that
already works (OSNet with its trained head, :mod:`attnreid.models.osnet`), as a residual
branch that starts at zero, so that the untrained plug-in network computes exactly the
features of the network without it; training then decides what the module adds. Where a stage
is named, ``stages[k]`` is the backbone's stage ``k`` (``stages[0]`` the stem; on OSNet
``stages[1..4]`` are ``conv2 .. conv5``, maps of 32x16, 16x8, 16x8, 16x8 at 256x128).

* ``sona2`` (SONA-Net, Xia et al. 2019): SONA after ``stages[2]``, the paper's SONA_2 (the same
  mapping as ``sona2_net`` on any backbone); its output projection ``p`` starts at zero
  (:class:`~attnreid.models.attention.sona.SONA`, ``zero_init``), which makes it the identity.
* ``ccan`` (CCAN, Zhou et al. 2020): SS-Attention after ``I1`` (the stages up to stride 8,
  :func:`~attnreid.models.ccan_parts.split_stages`), and CC-Attention between the ``k_p = 4``
  horizontal stripes of the map after ``I2`` (``q'``) and of one part stream's ``I2`` output
  (``q``), each stripe with its own module (``W_alpha`` is tied to the stripe's size). The part
  streams are kept minimal: one copy of ``I2`` (initialised from the backbone), run once on the
  whole ``I1`` map and cut into stripes, instead of CCAN's one ``I2`` + ``I3`` copy per stripe
  run on stripes resized to the full map (3.7x the network's time on OSNet). Both modules end in
  a ReLU projection (eq. 3), which a zeroed weight would never leave (no gradient through
  ``ReLU(0)``), so each is wrapped in :class:`GatedResidual`: ``x + gamma (A(x) - x)`` with a
  learnt scalar ``gamma = 0`` at the start.
* ``sa`` (SA-ResNet, Li et al. 2019): the self-attention block on the last map, whose
  ``alpha`` starts at 0 as the paper's (``y = alpha o + x``).
* ``duatm`` (DuATM, Si et al. 2018): the dual attention matching distance, a branch on the
  last map: its positions, average-pooled 2x2 (OSNet's 16x8 map at 256x128 becomes the 8x4
  sequence of the paper's DenseNet-121 Block-4 at that size), through ``FC`` to ``D = 256``,
  L2-normalised; training outputs the branch ``"duatm"`` (``dist`` for the matching triplet,
  ``seq`` for the de-correlation loss, ``logits`` of random convex combinations for eq. 8) beside
  the network's own ``"global"`` one. It is a distance, not a feature: the network's feature is
  unchanged by adding it, and ``rank_with`` says what a test ranks with: ``"matching"`` (the
  DuATM distance of the sequences) or ``"feature"`` (the network's own feature).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.models.attention.cc_attention import (
    CrossCorrelatedAttention,
    SymmetricSelfAttention,
)
from attnreid.models.attention.dual_attention import DualAttention
from attnreid.models.attention.self_attention import SelfAttention
from attnreid.models.attention.sona import SONA
from attnreid.models.backbones import Backbone
from attnreid.models.ccan_parts import split_stages
from attnreid.models.duatm import convex_combine

PLUGINS = ("none", "sona2", "ccan", "sa", "duatm")


class GatedResidual(nn.Module):
    """``x + gamma * (module(x) - x)``, ``gamma`` a learnt scalar that starts at 0."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, h, w)
        return x + self.gamma * (self.module(x) - x)


class StripeCrossAttention(nn.Module):
    """CC-Attention between the stripes of ``I2(z1)`` (one part stream) and of ``z2``, gated:
    ``z2 + gamma * (stripes of CC(q_s, z2_s) - z2)``, ``(B, C, h, w) -> (B, C, h, w)``.
    ``source``: the stage whose output is ``z1`` (the end of ``I1``)."""

    def __init__(
        self, stream: nn.Module, channels: int, map_size: Sequence[int], parts: int, source: int
    ) -> None:
        super().__init__()
        self.source = source
        h, w = int(map_size[0]), int(map_size[1])
        if h < parts:
            raise ModelError(f"ccan plug-in: a {h}x{w} map cannot be cut into {parts} stripes")
        self.parts = parts
        self.rows = [len(r) for r in torch.arange(h).tensor_split(parts)]
        self.stream = stream
        self.cc = nn.ModuleList(CrossCorrelatedAttention(channels, (r, w)) for r in self.rows)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, z2: Tensor, z1: Tensor) -> Tensor:
        # z1: (B, C1, 2h, 2w) the I1 map; z2: (B, C, h, w) the I2 map of the network
        q = self.stream(z1)  # (B, C, h, w), the part stream's I2 (equal to z2 at the start)
        out = [
            cc(qs, zs)  # (B, C, rows_s, w)
            for cc, qs, zs in zip(self.cc, q.split(self.rows, 2), z2.split(self.rows, 2))
        ]
        return z2 + self.gamma * (torch.cat(out, dim=2) - z2)


class DuATMBranch(nn.Module):
    """DuATM's sequence head, dual attention and eq. 8 classifier on a feature map."""

    def __init__(
        self, channels: int, num_classes: int, dim: int = 256, pool: int = 2, drop: float = 0.2
    ) -> None:
        super().__init__()
        self.pool, self.drop_prob, self.dim = pool, drop, dim
        self.embed = nn.Linear(channels, dim)
        self.matcher = DualAttention(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def sequence(self, fmap: Tensor) -> Tensor:
        """``(B, C, h, w) -> (B, h/pool * w/pool, D)``, unit-norm rows."""
        if self.pool > 1:
            fmap = F.avg_pool2d(fmap, self.pool, ceil_mode=True)
        return F.normalize(self.embed(fmap.flatten(2).transpose(1, 2)), dim=-1)

    def train_output(self, fmap: Tensor) -> dict[str, Tensor]:
        seq = self.sequence(fmap)  # (B, S, D)
        logits = self.classifier(convex_combine(seq, self.drop_prob))
        return {"dist": self.matcher(seq), "seq": seq, "logits": logits}

    def distance(self, query: Tensor, gallery: Tensor) -> Tensor:
        q, g = (x.reshape(len(x), -1, self.dim) for x in (query, gallery))
        return self.matcher.distance_matrix(q, g)


def build_plugins(
    plugin: str, backbone: Backbone, num_classes: int, input_size: Sequence[int] | None
) -> tuple[nn.ModuleDict, DuATMBranch | None]:
    """``(modules after stages, keyed by the stage index as a string; the DuATM branch)``.
    ``input_size``: the images' ``(H, W)`` (the ``ccan`` plug-in's attention is tied to the map
    sizes). Call after the backbone's weights are loaded: the ``ccan`` part stream copies them."""
    after: dict[str, nn.Module] = {}
    channels = backbone.stage_channels
    last = len(backbone.stages) - 1
    if plugin == "sona2":
        after["2"] = SONA(channels[2])
    elif plugin == "sa":
        after[str(last)] = SelfAttention(channels[last])
    elif plugin == "ccan":
        if input_size is None:
            raise ModelError("ccan plug-in: needs input_size (the engine sets it from data)")
        i1, i2, _ = split_stages(backbone)
        end1, end2 = len(i1) - 1, len(i1) + len(i2) - 1

        def size(stage: int) -> tuple[int, int]:
            stride = backbone.stage_strides[stage]
            return -(-int(input_size[0]) // stride), -(-int(input_size[1]) // stride)

        after[str(end1)] = GatedResidual(SymmetricSelfAttention(channels[end1], size(end1)))
        after[str(end2)] = StripeCrossAttention(
            copy.deepcopy(i2), channels[end2], size(end2), parts=4, source=end1
        )
    duatm = DuATMBranch(channels[last], num_classes) if plugin == "duatm" else None
    return nn.ModuleDict(after), duatm
