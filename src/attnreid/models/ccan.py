"""CCAN: Cross-Correlated Attention Network (Zhou, Roy, Fang, Harandi, Petersson; IVC 2020).

Architecture (section 3.2, Fig. 3), on GoogLeNet-v1 with BatchNorm (torchvision ``googlenet``)
cut into ``I1`` (stem + inception 3, 480 ch), ``I2`` (inception 4, 832) and ``I3`` (inception 5,
1024); see :mod:`attnreid.models.ccan_parts` for the cut and for other backbones:

* **global branch** ``G``: ``Z1 = SS_1^G(I1(x))``, ``Z2 = I2(Z1)``, ``I3(Z2)`` -> GAP ->
  ``FC_1^G`` (``d``) -> ``FC_2^G`` (identities);
* **local branch** ``L``: ``Z1`` and ``Z2`` are each cut into ``k_p`` horizontal stripes,
  resized back to their full map size (bilinear); part stream ``s`` has its own copies of
  ``I2`` and ``I3`` (initialised from the backbone, not shared) and a CC-Attention
  ``CC_{2,s}^L`` between ``q = I2_s(stripe_s(Z1))`` and ``q' = stripe_s(Z2)``, then ``I3_s``;
  the streams are pooled and concatenated (``C3 * k_p``) -> ``FC_1^L`` (``d``) -> ``FC_2^L``.

Training returns ``{"global": {"feat", "logits"}, "local": {"feat", "logits"}}`` (eq. 4 sums
cross-entropy and triplet terms over both); the test feature is each branch's ``d``-dim
embedding L2-normalised, concatenated (``2d``), compared with the euclidean distance (3.4).

Ablations (Table 6) switch branches and attention: ``global_branch`` / ``local_branch``,
``global_attention`` (``ssa``, ``nonlocal`` (Fig. 2) or ``none``) and ``local_attention``
(``cca``; ``ssa`` / ``nonlocal`` self-attention on ``q`` alone; ``none``). Registered names:

=============  ==============================  =============================================
name           Table 6                         options
=============  ==============================  =============================================
``ccan``       6, CCAN                         defaults
``ccan_g``     1, G                            no local branch, no attention
``ccan_l``     2, L                            no global branch, no attention
``ccan_gl``    3, G + L                        no attention
``ccan_g_ss``  4, G + SS_1^G                   no local branch
``ccan_gl_cc`` 5, G + L + CC_2^L               no global attention
``ccan_g_nl``  (G + non-local, Fig. 2)         no local branch, global non-local attention
=============  ==============================  =============================================

Choices where the paper is silent or where the public code differs from it (the default
follows the paper where it is explicit), each an option: which input is ``q`` in ``CC_{2,s}^L``
(``cca_query="stream"``: the stream's own ``I2`` output, so the residual of eq. 3 keeps the
stream's features and the global ``Z2`` stripe is the correlated map ``q'``; ``"global"``
swaps them); ``pool_bn`` and ``embed_bn_relu`` (the
public code's BatchNorm on the pooled features and Linear + BN + ReLU as FC1; ``False`` for
bare linear layers: the paper only names FC1 and FC2); ``stripes`` (``"slice"``, the paper's
independent slices, or the public code's affine-grid ``"grid"``, see
:mod:`attnreid.models.ccan_parts`); ``attention_bn`` (``False``: the attention projections are
the paper's ``phi(q W)``; ``True``: the public code's conv + BN + ReLU); ``alpha_init`` and
``reduction`` of the attention modules.
``input_size`` (``[H, W]``, filled by the engine from ``data.height/width``) fixes the map
sizes ``W_alpha`` is built for; another image size raises :class:`ModelError`.
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
from attnreid.models.attention.maps import attention_map, check_query_point
from attnreid.models.attention.nonlocal_attention import NonLocalSelfAttention
from attnreid.models.backbones import build_backbone
from attnreid.models.ccan_parts import (
    STRIPE_MODES,
    BranchHead,
    cut_stripes,
    split_stages,
    stage_channels,
)
from attnreid.models.registry import ReIDModel, register_model
from attnreid.utils.checks import one_of, positive_int
from attnreid.utils.device import eval_mode

GLOBAL_ATTENTIONS = ("ssa", "nonlocal", "none")
LOCAL_ATTENTIONS = ("cca", "ssa", "nonlocal", "none")
CCA_QUERIES = ("stream", "global")
# key -> (attention matrix (B, MN, MN), map size, stripe index or None)
_Record = dict[str, tuple[Tensor, tuple[int, int], int | None]]


def _make_attention(
    kind: str,
    channels: int,
    map_size: tuple[int, int],
    reduction: int,
    alpha_init: str,
    batch_norm: bool,
) -> nn.Module | None:
    if kind == "cca":
        return CrossCorrelatedAttention(channels, map_size, reduction, alpha_init, batch_norm)
    if kind == "ssa":
        return SymmetricSelfAttention(channels, map_size, reduction, alpha_init, batch_norm)
    if kind == "nonlocal":
        return NonLocalSelfAttention(channels, reduction, batch_norm)
    return None


def _apply(
    module: nn.Module,
    q: Tensor,
    q_prime: Tensor | None,
    key: str,
    stripe: int | None,
    record: _Record | None,
) -> Tensor:
    """Run an attention module; with ``record``, store its attention matrix under ``key``."""
    args = (q,) if q_prime is None else (q, q_prime)
    if record is None:
        return module(*args)
    z, attention = module(*args, return_attention=True)
    record[key] = (attention, (q.shape[2], q.shape[3]), stripe)
    return z


class PartStream(nn.Module):
    """One part stream: ``I2_s``, its attention ``CC_{2,s}^L`` (or none), ``I3_s``."""

    def __init__(self, i2: nn.Module, attention: nn.Module | None, i3: nn.Module) -> None:
        super().__init__()
        self.i2, self.attention, self.i3 = i2, attention, i3


class CCAN(ReIDModel):
    def __init__(
        self,
        num_classes: int,
        pretrained: str = "none",
        backbone: str = "googlenet",
        d: int = 1024,
        k_p: int = 4,
        global_branch: bool = True,
        local_branch: bool = True,
        global_attention: str = "ssa",
        local_attention: str = "cca",
        input_size: Sequence[int] = (256, 128),
        reduction: int = 8,
        alpha_init: str = "identity",
        pool_bn: bool = True,
        embed_bn_relu: bool = True,
        cca_query: str = "stream",
        stripes: str = "slice",
        attention_bn: bool = False,
    ) -> None:
        super().__init__()
        if not (global_branch or local_branch):
            raise ModelError("ccan: at least one of global_branch and local_branch must be on")
        one_of(global_attention, GLOBAL_ATTENTIONS, "ccan: global_attention", ModelError)
        one_of(local_attention, LOCAL_ATTENTIONS, "ccan: local_attention", ModelError)
        one_of(cca_query, CCA_QUERIES, "ccan: cca_query", ModelError)
        positive_int(d, "ccan: d", ModelError)
        positive_int(k_p, "ccan: k_p", ModelError)
        if len(input_size) != 2 or min(int(s) for s in input_size) < 16:
            raise ModelError(f"ccan: input_size must be [height, width] >= 16, got {input_size}")
        one_of(stripes, STRIPE_MODES, "ccan: stripes", ModelError)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.k_p = k_p
        self.stripes = stripes
        self.cca_query = cca_query
        self.global_attention_kind = global_attention
        self.local_attention_kind = local_attention if local_branch else "none"

        net = build_backbone(backbone, pretrained)
        c1, c2, c3 = stage_channels(net)
        i1, i2, i3 = split_stages(net)
        size1, size2 = self._map_sizes(i1, i2)
        self.map_sizes = (size1, size2)
        self.i1 = i1
        self.global_attention = _make_attention(
            global_attention, c1, size1, reduction, alpha_init, attention_bn
        )
        # The global I2 also feeds the local CC-Attention (Z2); I3 only the global branch.
        self.i2 = i2 if global_branch or self.local_attention_kind == "cca" else None
        self.i3 = i3 if global_branch else None
        self.streams = nn.ModuleList()
        if local_branch:
            for _ in range(k_p):
                attn = _make_attention(
                    local_attention, c2, size2, reduction, alpha_init, attention_bn
                )
                self.streams.append(PartStream(copy.deepcopy(i2), attn, copy.deepcopy(i3)))
        heads = {}
        if global_branch:
            heads["global"] = BranchHead(
                c3, d, num_classes, pool_bn=pool_bn, embed_bn_relu=embed_bn_relu
            )
        if local_branch:
            heads["local"] = BranchHead(
                c3 * k_p, d, num_classes, pool_bn=pool_bn, embed_bn_relu=embed_bn_relu
            )
        self.heads = nn.ModuleDict(heads)
        self.set_output(d * len(heads), num_classes, net)

    def _map_sizes(self, i1: nn.Module, i2: nn.Module) -> tuple[tuple[int, int], tuple[int, int]]:
        """Sizes of ``Z1`` and ``Z2`` for ``input_size`` (one forward on zeros, eval mode)."""
        with eval_mode(i1, i2), torch.no_grad():
            z1 = i1(torch.zeros(1, 3, *self.input_size))
            z2 = i2(z1)
        return (z1.shape[2], z1.shape[3]), (z2.shape[2], z2.shape[3])

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ModelError(f"ccan: input must be (B, 3, H, W), got {tuple(x.shape)}")
        if tuple(x.shape[2:]) != self.input_size and self.uses_size_tied_attention:
            h, w = self.input_size
            raise ModelError(
                f"ccan was built for {h}x{w} images (input_size) but got "
                f"{x.shape[2]}x{x.shape[3]}: its CC/SS-Attention (W_alpha) is tied to the "
                "feature-map size; rebuild it with input_size matching data.height/width"
            )

    @property
    def uses_size_tied_attention(self) -> bool:
        return self.global_attention_kind == "ssa" or self.local_attention_kind in ("cca", "ssa")

    def branch_features(self, x: Tensor, record: _Record | None = None) -> dict[str, Tensor]:
        """Pooled feature of each branch: ``{"global": (B, C3), "local": (B, C3 * k_p)}``."""
        # x: (B, 3, H, W)
        self._check_input(x)
        z1 = self.i1(x)  # (B, C1, M1, N1)
        if self.global_attention is not None:
            key = f"global_{self.global_attention_kind}"
            z1 = _apply(self.global_attention, z1, None, key, None, record)
        z2 = self.i2(z1) if self.i2 is not None else None  # (B, C2, M2, N2)
        pooled: dict[str, Tensor] = {}
        if self.i3 is not None:
            pooled["global"] = self.i3(z2).mean(dim=(2, 3))  # (B, C3)
        if len(self.streams):
            parts1 = cut_stripes(z1, self.k_p, self.stripes)  # (k_p, B, C1, M1, N1)
            parts2 = None
            if self.local_attention_kind == "cca":
                parts2 = cut_stripes(z2, self.k_p, self.stripes)  # (k_p, B, C2, M2, N2)
            outs = []
            for s, stream in enumerate(self.streams):
                q = stream.i2(parts1[s])  # (B, C2, M2, N2)
                if stream.attention is not None:
                    key = f"local{s + 1}_{self.local_attention_kind}"
                    q_prime = parts2[s] if parts2 is not None else None
                    if q_prime is not None and self.cca_query == "global":
                        q, q_prime = q_prime, q
                    q = _apply(stream.attention, q, q_prime, key, s, record)
                outs.append(stream.i3(q).mean(dim=(2, 3)))  # (B, C3)
            pooled["local"] = torch.cat(outs, dim=1)  # (B, C3 * k_p)
        return pooled

    def forward(self, x: Tensor) -> Tensor | dict[str, dict[str, Tensor]]:
        # x: (B, 3, H, W)
        outputs = {}
        for branch, vec in self.branch_features(x).items():
            feat, logits = self.heads[branch](vec)  # (B, d), (B, num_classes)
            outputs[branch] = {"feat": feat, "logits": logits}
        if self.training:
            return outputs
        # test feature: each branch's embedding L2-normalised, concatenated -> (B, d * branches)
        return torch.cat([F.normalize(out["feat"], dim=1) for out in outputs.values()], dim=1)

    @torch.no_grad()
    def attention_maps(
        self, x: Tensor, query_point: tuple[float, float] | None = None
    ) -> dict[str, Tensor]:
        """``{name: (B, h, w)}`` for every attention module (eval mode, no grad).

        ``global_<kind>`` is on the ``Z1`` grid. Part stream ``s`` (``local<s>_<kind>``) works on
        its stripe resized to the full map; its map is placed back in image layout, a
        ``(B, k_p * M2, N2)`` grid that is zero outside stripe ``s``. ``query_point=(y, x)``
        (image coordinates in ``[0, 1]``) selects the nearest position, for a part stream the
        nearest one inside its stripe; without it, the mean attention each position receives.
        """
        query_point = check_query_point(query_point)
        record: _Record = {}
        with eval_mode(self):
            self.branch_features(x, record)
        maps: dict[str, Tensor] = {}
        for key, (attention, (m, n), stripe) in record.items():
            if stripe is None:
                maps[key] = attention_map(attention, m, n, query_point)
                continue
            point = None
            if query_point is not None:
                y = min(max(query_point[0] * self.k_p - stripe, 0.0), 1.0)
                point = (y, query_point[1])
            full = attention.new_zeros(attention.shape[0], self.k_p * m, n)
            full[:, stripe * m : (stripe + 1) * m] = attention_map(attention, m, n, point)
            maps[key] = full
        return maps


ABLATIONS: dict[str, dict[str, object]] = {
    "ccan": {},
    "ccan_g": {"local_branch": False, "global_attention": "none"},
    "ccan_l": {"global_branch": False, "global_attention": "none", "local_attention": "none"},
    "ccan_gl": {"global_attention": "none", "local_attention": "none"},
    "ccan_g_ss": {"local_branch": False},
    "ccan_gl_cc": {"global_attention": "none"},
    "ccan_g_nl": {"local_branch": False, "global_attention": "nonlocal"},
}
for _name, _defaults in ABLATIONS.items():
    register_model(_name, **_defaults)(CCAN)
