"""DuATM, the Dual ATtention Matching network (Si et al., CVPR 2018), for images and video.

Feature sequence extraction (sec. 3.1), ``X = F(input)``, ``(B, S, D)`` with unit-norm rows:

* images (``duatm``): the DenseNet-121 Block-4 map ``(B, 1024, h, w)`` (8 x 4 at 256x128);
  its ``S = h * w`` positions, in row-major order, form the sequence; each vector goes
  through one FC layer to ``D = 256`` and is L2-normalised;
* video (``duatm_video``, ``handles_video = True``): clips ``(B, T, 3, H, W)``; each frame's
  Block-4 map is average-pooled to one vector (the frame-level vector DenseNet itself feeds
  its classifier), a bidirectional recurrent layer runs over the ``T`` frame vectors, and its
  hidden states form the sequence, each L2-normalised. The paper names neither the cell, nor
  the hidden size, nor how the two directions are combined; it only fixes ``D = 256`` for
  video too. Options (defaults ours): ``rnn="lstm"`` (or ``"gru"``): the LSTM is the usual
  choice for re-ID tracklets and needs no extra gate tuning; ``rnn_merge="concat"``: ``D / 2``
  hidden units per direction, concatenated to ``D`` (the standard bidirectional output, no
  extra layer), or ``"sum"``: ``D`` units per direction, added (after the L2 normalisation a
  sum and a mean are the same). No FC layer follows the recurrent layer: sec. 3.1 names
  none for video. A 4-D input is treated as one-frame clips.

Sequence matching (sec. 3.2) is :class:`~attnreid.models.attention.dual_attention.DualAttention`.
``matching`` chooses the Table 1 / Table 2 arm: ``"full"`` (DuATM), ``"intra"``, ``"inter"``,
or ``"avgpool"`` (the paper's baseline: the mean of the sequence, euclidean distance).

Training output ``{"duatm": {...}}``: ``"dist"`` ``(B, B)`` (the matching distance of every
pair of the batch, for ``type: matching_triplet``), ``"seq"`` (for ``type: decorrelation``),
``"logits"`` (the classifier on one random convex combination of each sequence, eq. 8, drop
probability ``drop_prob``, for ``type: cross_entropy``) and ``"feat"`` (the mean vector).

Test features: image sequences ``(B, S, D)``; the video model returns its clip's sequence
flattened, ``(B, T * D)``, so the clip and tracklet tooling of the evaluation handles it as a
vector (one clip per tracklet is the paper's protocol: a single 64-frame subsequence; with
``data.test_frames: all`` the evaluation would average the sequences of a tracklet's chunks
position by position, which is not a DuATM feature, so the presets use one clip per
tracklet); :meth:`compute_distance` accepts both forms. ``avgpool`` returns the mean vector
``(B, D)`` and the configured metric is used, and so does ``rank_with="feature"``: the trained
network's mean vector, compared by the metric, which is what a tracker, a gallery index or an
exported graph can use (they compare one vector per image; the matching distance needs the
pair). ``rank_with="matching"`` (default) ranks with the matching distance:
``eval_mode="exact"`` scores every query x gallery pair, ``"two_stage"`` ranks by the mean
vectors and re-scores the top ``rerank_k`` with DuATM
(:meth:`DualAttention.two_stage_distance` says how the rest is ordered). Sequence features
must not be flip-averaged position by position: the presets set ``eval.flip: false`` (the
paper evaluates without augmentation, except its ** rows, whose test-time augmentation it
does not describe; not reproduced).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnreid.errors import ConfigError, ModelError
from attnreid.models.attention.dual_attention import DualAttention
from attnreid.models.attention.maps import cell_index
from attnreid.models.backbones import build_backbone
from attnreid.models.registry import ReIDModel, register_model
from attnreid.utils.checks import one_of, positive_int
from attnreid.utils.device import eval_mode
from attnreid.utils.distance import pairwise_distance

MATCHINGS = ("full", "intra", "inter", "avgpool")
EVAL_MODES = ("exact", "two_stage")
#: What a test ranks with: the matching distance, or the mean vector with the metric.
RANK_WITH = ("matching", "feature")
RNNS = ("lstm", "gru")
RNN_MERGES = ("concat", "sum")


# Random convex combination (eq. 8): ``w_i ~ U[0, 1]``, each reset to 0 with probability ``p``,
# then divided by their sum. If every weight of a sequence was reset (probability ``p^S``) that
# sequence is averaged uniformly instead; the paper does not say.
def random_convex_weights(
    batch: int,
    length: int,
    drop_prob: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``(batch, length)`` random convex-combination weights: non-negative, rows sum to 1."""
    if not 0.0 <= drop_prob < 1.0:
        raise ConfigError(f"convex combination drop probability must be in [0, 1), got {drop_prob}")
    w = torch.rand(batch, length, generator=generator, device=device)
    keep = torch.rand(batch, length, generator=generator, device=device) >= drop_prob
    w = w * keep
    total = w.sum(1, keepdim=True)
    uniform = torch.full_like(w, 1.0 / length)
    return torch.where(total > 0, w / total.clamp_min(1e-12), uniform)


def convex_combine(
    seq: Tensor, drop_prob: float, *, generator: torch.Generator | None = None
) -> Tensor:
    """``z_b = sum_i w_{b,i} x_b^i`` with :func:`random_convex_weights`: ``(B, S, D) -> (B, D)``."""
    w = random_convex_weights(
        seq.shape[0], seq.shape[1], drop_prob, generator=generator, device=seq.device
    )
    return torch.einsum("bs,bsd->bd", w.to(seq.dtype), seq)


class DuATMBase(ReIDModel):
    """What the image and the video DuATM share: the backbone, the matching (``matcher``), the
    classifier of eq. 8, training outputs, test features, distances and attention maps.

    A subclass adds its sequence head and implements :meth:`sequence_grid`; its ``__init__``
    takes ``**options`` and passes them on, and the model registry reads this class's
    signature for them.
    """

    #: The model's name in messages, and what it reads (``"images"`` or ``"clips"``).
    kind, inputs = "duatm", "images"
    #: avgpool, or rank_with="feature": the metric ranks the mean vectors
    own_distance = property(lambda self: self.matcher is not None and self.rank_with == "matching")

    def __init__(
        self,
        num_classes: int,
        pretrained: str = "none",
        backbone: str = "densenet121",
        last_stride: int = 2,
        dim: int = 256,
        matching: str = "full",
        drop_prob: float = 0.2,
        eval_mode: str = "exact",
        rerank_k: int = 100,
        block_size: int | None = None,
        rank_with: str = "matching",
    ) -> None:
        super().__init__()
        one_of(matching, MATCHINGS, "duatm: matching", ModelError)
        self.rank_with = one_of(rank_with, RANK_WITH, "duatm: rank_with", ModelError)
        one_of(eval_mode, EVAL_MODES, "duatm: eval_mode", ModelError)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
            raise ModelError(f"duatm: dim must be an integer >= 2, got {dim!r}")
        if not 0.0 <= drop_prob < 1.0:
            raise ModelError(f"duatm: drop_prob must be in [0, 1), got {drop_prob!r}")
        positive_int(rerank_k, "duatm: rerank_k", ModelError)
        if block_size is not None:
            positive_int(block_size, "duatm: block_size", ModelError)
        self.backbone = build_backbone(backbone, pretrained, last_stride=last_stride)
        self.matching, self.drop_prob = matching, drop_prob
        self.eval_mode, self.rerank_k, self.block_size = eval_mode, rerank_k, block_size
        self.dim = dim
        self.set_output(dim, num_classes, self.backbone)
        self.matcher = DualAttention(dim, matching) if matching != "avgpool" else None
        self.classifier = nn.Linear(dim, num_classes)  # eq. 8's FC layer (theta)

    def sequence_grid(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """The feature sequences ``(B, S, D)`` of ``x``, unit-norm rows, and the ``(h, w)``
        grid their ``S = h * w`` positions tile (row-major)."""
        raise NotImplementedError

    def sequence(self, x: Tensor) -> Tensor:
        """Feature sequences ``(B, S, D)``, unit-norm rows."""
        return self.sequence_grid(x)[0]

    def forward(self, x: Tensor) -> Tensor | dict[str, dict[str, Tensor]]:
        seq = self.sequence(x)  # (B, S, D)
        if not self.training:
            return self._test_feature(seq) if self.own_distance else seq.mean(1)  # (B, D)
        # (B, B): eq. 5 for every pair, or the euclidean distance of the pooled vectors
        dist = pairwise_distance(seq.mean(1).float()) if self.matcher is None else self.matcher(seq)
        logits = self.classifier(convex_combine(seq, self.drop_prob))
        return {"duatm": {"dist": dist, "seq": seq, "logits": logits, "feat": seq.mean(1)}}

    def _test_feature(self, seq: Tensor) -> Tensor:
        return seq  # (B, S, D)

    def _sequences(self, feats: Tensor, name: str) -> Tensor:
        if feats.dim() == 2 and feats.shape[1] % self.dim == 0:
            return feats.reshape(len(feats), -1, self.dim)  # flattened (N, S * D)
        if feats.dim() == 3 and feats.shape[2] == self.dim:
            return feats
        raise ConfigError(
            f"DuATM distance: {name} features must be sequences (N, S, {self.dim}) or their "
            f"flattened (N, S * {self.dim}) form, got shape {tuple(feats.shape)}"
        )

    def compute_distance(self, query: Tensor, gallery: Tensor) -> Tensor | None:
        """The DuATM distance ``(Q, G)`` (None for ``avgpool``: the configured metric)."""
        if self.matcher is None:
            return None
        q, g = self._sequences(query, "query"), self._sequences(gallery, "gallery")
        if self.eval_mode == "two_stage":
            return self.matcher.two_stage_distance(q, g, self.rerank_k)
        return self.matcher.distance_matrix(q, g, block_size=self.block_size)

    @torch.no_grad()
    def attention_maps(
        self,
        x: Tensor,
        query_point: tuple[float, float] | None = None,
        other: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """``{"intra": (B, h, w)}`` (and ``"inter"`` when ``other`` inputs are given), over the
        grid of :meth:`sequence_grid`: the Block-4 map of an image, ``(1, T)`` frames of a clip.

        ``intra``: with ``query_point=(y, x)`` in [0, 1], the intra-sequence weights of that
        cell's vector over the positions of its own input (for a clip, ``x`` picks the
        frame); without, the mean weight each position receives. ``inter`` (needs ``other``,
        inputs like ``x``): the same for the inter-sequence weights over the positions of
        ``other``, the alignment of eq. 3.
        """
        if self.matcher is None:
            raise ModelError(f"{self.kind}: matching='avgpool' has no attention to draw")
        if not self.matcher.intra and other is None:
            pair = f"inter-only matching attends across a pair: pass other= {self.inputs}"
            raise ModelError(f"{self.kind}: {pair}")
        with eval_mode(self):
            seq, (h, w) = self.sequence_grid(x)
            q = self.matcher.filters(seq)
            memories = {"intra": seq} if self.matcher.intra else {}
            if other is not None:
                memories["inter"] = self.sequence(other.to(x.device))
            out = {}
            for name, mem in memories.items():
                wts = self.matcher.weights(q, mem)  # (B, S, S')
                m = wts[:, cell_index(query_point, h, w)] if query_point else wts.mean(1)
                out[name] = m.reshape(len(x), *self._map_shape(mem, h, w))
            return out

    @staticmethod
    def _map_shape(mem: Tensor, h: int, w: int) -> tuple[int, int]:
        return (h, w) if mem.shape[1] == h * w else (1, mem.shape[1])


class DuATM(DuATMBase):
    """DuATM on images: DenseNet-121 feature sequences + dual attention matching."""

    handles_video = False

    def __init__(self, num_classes: int, pretrained: str = "none", **options: Any) -> None:
        super().__init__(num_classes, pretrained, **options)
        self.embed = nn.Linear(self.backbone.out_channels, self.dim)

    def sequence_grid(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """``(B, 3, H, W) -> (B, h * w, D)``: the Block-4 map's positions, through ``embed``."""
        fmap = self.backbone(x)  # (B, C, h, w)
        seq = F.normalize(self.embed(fmap.flatten(2).transpose(1, 2)), dim=-1)  # (B, h*w, D)
        return seq, (fmap.shape[-2], fmap.shape[-1])


class DuATMVideo(DuATMBase):
    """DuATM on video: per-frame DenseNet vectors -> bidirectional RNN -> hidden-state sequence."""

    handles_video = True
    kind, inputs = "duatm_video", "clips"

    def __init__(
        self,
        num_classes: int,
        pretrained: str = "none",
        *,
        rnn: str = "lstm",
        rnn_merge: str = "concat",
        frame_chunk: int = 128,
        **options: Any,
    ) -> None:
        one_of(rnn, RNNS, "duatm_video: rnn", ModelError)
        one_of(rnn_merge, RNN_MERGES, "duatm_video: rnn_merge", ModelError)
        super().__init__(num_classes, pretrained, **options)
        if rnn_merge == "concat" and self.dim % 2:
            raise ModelError(f"duatm_video: dim must be even (D / 2 per direction), got {self.dim}")
        self.rnn_type, self.rnn_merge = rnn, rnn_merge
        self.frame_chunk = max(1, int(frame_chunk))
        cell = nn.LSTM if rnn == "lstm" else nn.GRU
        hidden = self.dim // 2 if rnn_merge == "concat" else self.dim
        self.rnn = cell(self.backbone.out_channels, hidden, batch_first=True, bidirectional=True)

    def frame_vectors(self, x: Tensor) -> Tensor:
        """``(B, T, 3, H, W) -> (B, T, C)``: each frame's Block-4 map, average-pooled. Without
        gradients the frames go through the backbone ``frame_chunk`` at a time."""
        b, t = x.shape[:2]
        frames = x.flatten(0, 1)
        if torch.is_grad_enabled():
            pooled = self.backbone(frames).mean(dim=(2, 3))
        else:
            pooled = torch.cat(
                [self.backbone(c).mean(dim=(2, 3)) for c in frames.split(self.frame_chunk)]
            )
        return pooled.view(b, t, -1)

    def sequence_grid(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """``(B, T, 3, H, W)`` (or ``(B, 3, H, W)``: ``T = 1``) ``-> (B, T, D)``, a ``(1, T)``
        grid."""
        if x.dim() == 4:
            x = x.unsqueeze(1)
        hidden, _ = self.rnn(self.frame_vectors(x))  # (B, T, 2 H): [forward, backward]
        if self.rnn_merge == "sum":  # H = D
            hidden = hidden[..., : self.dim] + hidden[..., self.dim :]
        return F.normalize(hidden, dim=-1), (1, hidden.shape[1])  # (B, T, D)

    def _test_feature(self, seq: Tensor) -> Tensor:
        return seq.flatten(1)  # (B, T * D)


register_model("duatm")(DuATM)
register_model("duatm_video")(DuATMVideo)
