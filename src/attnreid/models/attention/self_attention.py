"""The self-attention block of SA-ResNet (Li, Jiang, Hwang, Knowledge-Based Systems 2019).

The block attends over the ``L = h * w`` positions of a ``(B, D, h, w)`` feature map (the
``8 x 4 x 2048`` ResNet-50 map at 256x128) and adds the result back to the map:

* eq. 2-3: three 1x1 convolutions ``f, g, h`` map ``D`` channels to ``D / 8`` ("we convert them
  to a lower-dimensional feature space D = D/8"), each followed by a ReLU, and the response
  between positions is ``e_ij = max(f(x_i), 0)^T max(g(x_j), 0)``;
* eq. 4: the scores ``s_{j,i} = exp(e_ij) / sum_i exp(e_ij)`` — for every output position
  ``j`` a distribution over the attended positions ``i`` (the rows of :meth:`attention` sum
  to 1); ``scores="sigmoid"`` is the Table 6 ablation, ``s_{j,i} = sigmoid(e_ij)``;
* eq. 5: ``o_j = sum_i s_{j,i} h(x_i)`` followed by a 1x1 convolution ``D / 8 -> D``;
* eq. 6: ``y = alpha * o + x`` with ``alpha`` a learned scalar initialised to 0, so the block
  starts as the identity.

Shapes: input and output ``(B, D, h, w)``; ``f, g``: ``(B, D/key_reduction, L)``;
``h``: ``(B, D/value_reduction, L)``; scores ``(B, L, L)``, row ``j`` = output position ``j``,
column ``i`` = attended position ``i`` (both in row-major ``h x w`` order).

Where the paper is ambiguous, the choices (each an option unless there is only one reading):

* **Eq. 2's matrices and eq. 3's indices.** Eq. 2 gives ``W_f, W_g, W_h`` in ``R^{D x D}`` but the
  next sentence reduces the three spaces to ``D / 8``; we follow the sentence. Eq. 3 writes
  ``f(x_i)^T g(x_i)``; the response must pair two positions (``e_ij`` is indexed by both), so
  it is ``f(x_i)^T g(x_j)``, as in SAGAN.
* **Eq. 4's denominator** runs over ``i = 1..D`` and the text says ``s_{j,i}`` synthesises "the
  j-th dimension", yet ``i`` is "the i-th location on the feature map" and each row is called
  "a probability mass function": the softmax is over the ``L`` positions ``i`` for every output
  position ``j`` (SAGAN's ``sum_{i=1}^N``), not over channels. There is no other consistent
  reading, so this is not an option.
* **Eq. 5's double sum** ``o_j = sum_{i=1}^L sum_{j=1}^D s_{i,j} h(x)`` sums over the index it
  defines and over channels. Read literally, summing over ``j`` too makes ``o`` the same vector
  at every position. We follow SAGAN (Zhang et al. 2019), from which eqs. 3-6 are taken
  nearly word for word ("the extent to which the model attends to the i-th location when
  synthesizing the j-th ..."): ``o_j = sum_i s_{j,i} h(x_i)`` (``aggregation="position"``).
  ``aggregation="global"`` is the literal reading: ``o = sum_i (sum_j s_{j,i}) h(x_i) / L``
  broadcast to every position (divided by ``L`` so the weights still sum to 1).
* **The value dimension.** The paper reduces all three spaces to ``D / 8`` but adds ``o`` to
  ``x`` (``D`` channels) in eq. 6; SAGAN keeps ``h`` at ``C/2`` or ``C``. We reduce ``h`` to
  ``D / value_reduction`` (8, the paper's) and project back to ``D`` with a 1x1 convolution
  (with bias) so that eq. 6's residual sum is defined: sec. 3.2 names no such layer, but
  SAGAN's block, whose eqs. 3-6 the paper follows, ends with one (its ``v``).
* **ReLU on h.** Eq. 3 only rectifies ``f`` and ``g``; the text applies the ReLU after the
  "linear space conversion" of the three spaces ("ReLU is combined to get a nonlinear
  response"; "distinct convolution kernels are combined with non-linear functions").
  ``value_relu=True`` (default) rectifies ``h`` as well; ``False`` is eq. 3 to the letter.
* **No bias in f, g, h.** Eq. 2 is linear: ``f(x) = W_f x, g(x) = W_g x, h(x) = W_h x``.
  ``qkv_bias=False`` (default) builds the three 1x1 convolutions without bias, as eq. 2;
  ``qkv_bias=True`` gives each a bias (SAGAN's code, and this block before the option
  existed). A checkpoint trained with the biases (it holds ``f.bias``, ``g.bias``, ``h.bias``)
  still loads into a block built without them: the block takes the biases back on loading
  (:meth:`SelfAttention._load_from_state_dict`), so it computes what was trained. The output
  projection ``D / 8 -> D`` (not in the paper, see above) keeps its bias.
* **No 1/sqrt(d) scale.** Eq. 1 (Vaswani et al.) scales the dot products, eqs. 3-4 do not;
  ``scale=False`` follows eqs. 3-4, ``scale=True`` divides ``e`` by ``sqrt(D / key_reduction)``.
* **Sigmoid scores** (Table 6 says only that the sigmoid replaces the softmax) are not
  normalised over positions. ``sigmoid_mean=True`` (default) divides the weighted sum by ``L``
  (a mean rather than a sum) so that ``o`` has the scale of the softmax variant: ``alpha`` and
  the output projection are learned either way, so this only keeps the two ablation arms'
  initial gradients comparable. ``sigmoid_mean=False`` is the plain sum of eq. 5.
  (With rectified ``f`` and ``g``, ``e >= 0`` and the sigmoid scores lie in ``[0.5, 1)``.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.models.attention.maps import attention_map
from attnreid.models.attention.maps import cell_index as query_index  # noqa: F401  (re-exported)
from attnreid.utils.checks import one_of, positive_int

SCORES = ("softmax", "sigmoid")
AGGREGATIONS = ("position", "global")


def _reduced(channels: int, reduction: int, what: str) -> int:
    positive_int(reduction, f"self-attention: {what}", ModelError)
    if channels % reduction:
        raise ModelError(
            f"self-attention: {channels} channels are not divisible by {what}={reduction}"
        )
    return channels // reduction


class SelfAttention(nn.Module):
    """SA-ResNet's self-attention: ``(B, D, h, w) -> (B, D, h, w)``, ``y = alpha * o + x``.

    Args:
        in_channels: ``D``.
        key_reduction: ``f`` and ``g`` have ``D // key_reduction`` channels (paper: 8).
        value_reduction: ``h`` has ``D // value_reduction`` channels (paper: 8).
        scores: ``"softmax"`` over attended positions (eq. 4) or ``"sigmoid"`` (Table 6).
        aggregation: ``"position"`` (SAGAN reading of eq. 5) or ``"global"`` (literal).
        value_relu: rectify ``h`` as ``f`` and ``g``.
        scale: divide the responses by ``sqrt(D // key_reduction)``.
        sigmoid_mean: with sigmoid scores, average over the attended positions instead of
            summing (no effect with softmax).
        qkv_bias: give the ``f``, ``g``, ``h`` 1x1 convolutions a bias (eq. 2 has none).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        key_reduction: int = 8,
        value_reduction: int = 8,
        scores: str = "softmax",
        aggregation: str = "position",
        value_relu: bool = True,
        scale: bool = False,
        sigmoid_mean: bool = True,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        one_of(scores, SCORES, "self-attention: scores", ModelError)
        one_of(aggregation, AGGREGATIONS, "self-attention: aggregation", ModelError)
        key_dim = _reduced(in_channels, key_reduction, "key_reduction")
        value_dim = _reduced(in_channels, value_reduction, "value_reduction")
        self.scores, self.aggregation = scores, aggregation
        self.value_relu, self.sigmoid_mean = value_relu, sigmoid_mean
        self.temperature = math.sqrt(key_dim) if scale else 1.0
        self.qkv_bias = bool(qkv_bias)
        self.f = nn.Conv2d(in_channels, key_dim, 1, bias=self.qkv_bias)
        self.g = nn.Conv2d(in_channels, key_dim, 1, bias=self.qkv_bias)
        self.h = nn.Conv2d(in_channels, value_dim, 1, bias=self.qkv_bias)
        self.out = nn.Conv2d(value_dim, in_channels, 1)
        self.alpha = nn.Parameter(torch.zeros(()))

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list,
        unexpected_keys: list,
        error_msgs: list,
    ) -> None:
        # Weights trained with biased f, g, h (qkv_bias=True, the only form before the option
        # existed) loaded into a block built without them: give the convolutions their biases
        # back (before the children load theirs), so the block computes what was trained.
        if not self.qkv_bias and all(f"{prefix}{k}.bias" in state_dict for k in "fgh"):
            for name in "fgh":
                conv = getattr(self, name)
                conv.bias = nn.Parameter(conv.weight.new_zeros(conv.out_channels))
            self.qkv_bias = True
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def attention(self, x: Tensor) -> Tensor:
        """The scores ``s``: ``(B, D, h, w) -> (B, L, L)``, row ``j`` attends over columns ``i``."""
        fx = F.relu(self.f(x)).flatten(2)  # (B, Dk, L)   attended positions i
        gx = F.relu(self.g(x)).flatten(2)  # (B, Dk, L)   output positions j
        energy = torch.bmm(gx.transpose(1, 2), fx)  # (B, L_j, L_i): e_ij = f(x_i) . g(x_j)
        if self.temperature != 1.0:
            energy = energy / self.temperature
        if self.scores == "softmax":
            return energy.softmax(dim=-1)  # each row sums to 1 (eq. 4)
        return torch.sigmoid(energy)

    def maps(self, x: Tensor, query_point: tuple[float, float] | None = None) -> Tensor:
        """Attention maps for visualisation: ``(B, D, h, w) -> (B, h, w)``.

        With ``query_point=(y, x)`` in ``[0, 1]`` image coordinates: the scores of the feature
        position whose cell contains the point, over all positions. Without: the mean score
        each position receives from all output positions.
        """
        _, _, hh, ww = x.shape
        return attention_map(self.attention(x), hh, ww, query_point)  # (B, h, w)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, D, h, w)
        b, _, hh, ww = x.shape
        length = hh * ww
        s = self.attention(x)  # (B, L, L)
        hx = self.h(x)
        if self.value_relu:
            hx = F.relu(hx)
        hx = hx.flatten(2)  # (B, Dv, L)
        if self.scores == "sigmoid" and self.sigmoid_mean:
            s = s / length  # mean instead of sum over the attended positions
        if self.aggregation == "position":
            o = torch.bmm(hx, s.transpose(1, 2))  # (B, Dv, L_j): o_j = sum_i s_ji h_i
        else:
            weights = s.sum(dim=1, keepdim=True) / length  # (B, 1, L_i)
            o = (hx * weights).sum(dim=2, keepdim=True).expand(-1, -1, length)  # (B, Dv, L)
        o = self.out(o.reshape(b, -1, hh, ww))  # (B, D, h, w)
        return self.alpha * o + x  # eq. 6

    def extra_repr(self) -> str:
        return (
            f"scores={self.scores!r}, aggregation={self.aggregation!r}, "
            f"value_relu={self.value_relu}, temperature={self.temperature:g}, "
            f"qkv_bias={self.qkv_bias}"
            + (f", sigmoid_mean={self.sigmoid_mean}" if self.scores == "sigmoid" else "")
        )
