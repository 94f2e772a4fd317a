"""Structured feature dropping for the local branch of SONA-Net: DropBlock, DropBlock+, BFE.

All three act on a ``(B, C, H, W)`` map in training mode only and are the identity at test time
(and in eval mode). Each exposes ``keep_mask(x)``, the 0/1 mask it multiplies by (broadcastable
to ``x``), so that tests and visualisations can inspect it.

* :class:`DropBlock` (Ghiasi, Lin, Le, NeurIPS 2018; the official TF code): block seeds are
  drawn per sample and per channel with probability ``gamma`` at the positions where a whole
  ``bs x bs`` block fits, each seed drops its block, and the kept units are rescaled by
  ``numel / kept`` of the whole tensor. ``gamma`` follows from the target drop probability
  ``drop_prob`` (``1 - keep_prob`` in the paper)::

      gamma = drop_prob * W^2 / bs^2 / (W - bs + 1)^2      (square maps; here H * W for W^2)

  A block larger than the map is clamped to it, as the TF code does.
* :class:`DropBlockPlus` (SONA-Net's DropBlock+, "a variable size for both height and width
  of the drop block area", section 2.1; it gives no formula): the same with a ``bh x bw``
  rectangle, and Ghiasi et al.'s gamma with each squared side replaced by height x width::

      gamma = drop_prob * H * W / (bh * bw) / ((H - bh + 1) * (W - bw + 1))

  SONA-Net's paper sets "gamma to 0.1, block_height to 5, and block_width to 8" (so the block
  is 5 rows high and 8 columns wide, on a 48 x 16 map). Read as the seed rate, gamma = 0.1
  would drop 98.5% of an interior unit's values (40 candidate blocks cover it: 1 - 0.9^40)
  and 77% of the map; read as the drop probability it drops ~10%, the regime DropBlock is
  used in. We therefore take the paper's gamma as the drop probability
  (``gamma_mode="drop_prob"``, default) and offer the other reading as
  ``gamma_mode="rate"``. "Variable size" is read as "height and width chosen independently";
  the paper fixes both, so they are fixed per module, not resampled. Masks are per sample and
  channel and rescaled, as in DropBlock, which DropBlock+ generalises (``rescale=False``
  turns the rescaling off; the paper does not say).
* Scheduling: Ghiasi et al. ramp the drop probability linearly from 0 to its target over
  training ("scheduled DropBlock"). SONA-Net gives one fixed gamma and no schedule, so the
  default is a fixed rate (``ramp_steps=0``); ``ramp_steps=N`` ramps the rate (either
  ``gamma_mode``) linearly over the first ``N`` training forwards, counted in a ``steps``
  buffer (saved with the weights, so a resumed run continues the ramp).
* :class:`BatchFeatureErasing` (Dai et al., "Batch DropBlock", arXiv 1811.07130, and their
  code): one rectangle per forward, ``round(h_ratio * H)`` rows by ``round(w_ratio * W)``
  columns (0.33 and 1.0: a full-width stripe; 16 of 48 rows) at a uniform position, shared by
  every sample and channel of the batch, no rescaling. Python's ``round`` is the latest
  version of their ``BatchDrop`` (an earlier commit truncated with ``int()``: 15 of 48 rows).
  We clamp the size to at least one row and column (``round`` gives 0 on maps of 1 row).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnreid.errors import ModelError
from attnreid.utils.checks import one_of

DROP_METHODS = ("none", "dropblock", "dropblock_plus", "bfe")
GAMMA_MODES = ("drop_prob", "rate")


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair
    ):
        raise ModelError(f"{what} must be a positive integer or [height, width], got {value!r}")
    return pair[0], pair[1]


def _probability(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ModelError(f"{what} must be a number in [0, 1), got {value!r}")
    return float(value)


def dropblock_gamma(height: int, width: int, block_h: int, block_w: int, drop_prob: float) -> float:
    """Seed rate that drops about ``drop_prob`` of a ``height x width`` map with ``block_h x
    block_w`` blocks (Ghiasi et al.'s formula, rectangular); blocks are clamped to the map."""
    bh, bw = min(block_h, height), min(block_w, width)
    return drop_prob * height * width / (bh * bw) / ((height - bh + 1) * (width - bw + 1))


class DropBlockPlus(nn.Module):
    """DropBlock with a ``block_size = (height, width)`` rectangle; ``(B, C, H, W)`` in/out.

    Args:
        drop_prob: target fraction of dropped units (``gamma_mode="drop_prob"``), or the seed
            rate itself (``gamma_mode="rate"``).
        block_size: ``(height, width)`` of a block, or one int for a square.
        gamma_mode: how ``drop_prob`` is read, see the module docstring.
        rescale: divide the kept units by the kept fraction of the whole tensor.
        ramp_steps: ramp ``drop_prob`` linearly from 0 over this many training forwards
            (Ghiasi et al.'s schedule); 0 keeps it fixed.
    """

    def __init__(
        self,
        drop_prob: float = 0.1,
        block_size: int | Sequence[int] = (5, 8),
        *,
        gamma_mode: str = "drop_prob",
        rescale: bool = True,
        ramp_steps: int = 0,
    ) -> None:
        super().__init__()
        self.drop_prob = _probability(drop_prob, "drop_prob")
        self.block_size = _pair(block_size, "block_size")
        one_of(gamma_mode, GAMMA_MODES, "gamma_mode", ModelError)
        if not isinstance(rescale, bool):
            raise ModelError(f"rescale must be true or false, got {rescale!r}")
        if isinstance(ramp_steps, bool) or not isinstance(ramp_steps, int) or ramp_steps < 0:
            raise ModelError(f"ramp_steps must be a non-negative integer, got {ramp_steps!r}")
        self.gamma_mode, self.rescale, self.ramp_steps = gamma_mode, rescale, ramp_steps
        if ramp_steps:
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def current_drop_prob(self) -> float:
        """``drop_prob`` scaled by the ramp: ``drop_prob * min(1, steps / ramp_steps)``."""
        if not self.ramp_steps:
            return self.drop_prob
        return self.drop_prob * min(1.0, int(self.steps) / self.ramp_steps)

    def gamma(self, height: int, width: int) -> float:
        """The Bernoulli rate of block seeds on a ``height x width`` map (at the current
        point of the ramp)."""
        if self.gamma_mode == "rate":
            return self.current_drop_prob()
        return dropblock_gamma(height, width, *self.block_size, self.current_drop_prob())

    def keep_mask(self, x: Tensor) -> Tensor:
        """A fresh 0/1 mask of ``x``'s shape: 0 inside the dropped blocks."""
        # x: (B, C, H, W)
        b, c, h, w = x.shape
        bh, bw = min(self.block_size[0], h), min(self.block_size[1], w)
        # Seeds are the top-left corners of blocks that fit entirely inside the map.
        seeds = x.new_empty(b, c, h - bh + 1, w - bw + 1).bernoulli_(self.gamma(h, w))
        # A position is dropped when a seed lies within (bh - 1, bw - 1) above-left of it.
        padded = F.pad(seeds, (bw - 1, bw - 1, bh - 1, bh - 1))
        dropped = F.max_pool2d(padded, (bh, bw), stride=1)  # (B, C, H, W)
        return 1.0 - dropped

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, H, W)
        if not self.training or self.drop_prob == 0:
            return x
        if self.ramp_steps:
            self.steps += 1  # the first training forward drops drop_prob / ramp_steps
        mask = self.keep_mask(x)
        if self.rescale:
            mask = mask * (mask.numel() / mask.sum().clamp_min(1.0))
        return x * mask

    def extra_repr(self) -> str:
        return (
            f"drop_prob={self.drop_prob}, block_size={self.block_size}, "
            f"gamma_mode={self.gamma_mode!r}, rescale={self.rescale}, "
            f"ramp_steps={self.ramp_steps}"
        )


class DropBlock(DropBlockPlus):
    """Square DropBlock of Ghiasi et al. (``block_size`` one int): ``(B, C, H, W)`` in/out.

    The default block is 5 x 5: SONA-Net does not give the size of its plain-DropBlock
    ablation (BL+DB); 5 is DropBlock+'s block height, so BL+DB and BL+DB+ differ only in the
    block's width (Ghiasi et al.'s 7 was tuned on 14 x 14 and 7 x 7 ImageNet maps).
    """

    def __init__(
        self,
        drop_prob: float = 0.1,
        block_size: int = 5,
        *,
        gamma_mode: str = "drop_prob",
        rescale: bool = True,
        ramp_steps: int = 0,
    ) -> None:
        if isinstance(block_size, Sequence):
            pair = _pair(block_size, "block_size")
            if pair[0] != pair[1]:
                raise ModelError(
                    f"DropBlock uses square blocks, got block_size {list(block_size)}; "
                    "use dropblock_plus for rectangles"
                )
            block_size = pair[0]
        super().__init__(
            drop_prob, block_size, gamma_mode=gamma_mode, rescale=rescale, ramp_steps=ramp_steps
        )


class BatchFeatureErasing(nn.Module):
    """Batch feature erasing: one ``h_ratio x w_ratio`` rectangle per forward, shared by the
    whole batch and every channel, no rescaling; ``(B, C, H, W)`` in/out."""

    def __init__(self, h_ratio: float = 0.33, w_ratio: float = 1.0) -> None:
        super().__init__()
        for name, value in (("h_ratio", h_ratio), ("w_ratio", w_ratio)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ModelError(f"batch feature erasing: {name} must be in (0, 1], got {value!r}")
        self.h_ratio, self.w_ratio = float(h_ratio), float(w_ratio)

    def erase_size(self, height: int, width: int) -> tuple[int, int]:
        """Rows and columns of the erased rectangle on a ``height x width`` map."""
        return max(1, round(self.h_ratio * height)), max(1, round(self.w_ratio * width))

    def keep_mask(self, x: Tensor) -> Tensor:
        """A fresh ``(1, 1, H, W)`` 0/1 mask, 0 inside the erased rectangle."""
        # x: (B, C, H, W)
        h, w = x.shape[-2:]
        rh, rw = self.erase_size(h, w)
        top = int(torch.randint(h - rh + 1, ()))
        left = int(torch.randint(w - rw + 1, ()))
        mask = x.new_ones(1, 1, h, w)
        mask[..., top : top + rh, left : left + rw] = 0
        return mask

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, H, W)
        if not self.training:
            return x
        return x * self.keep_mask(x)

    def extra_repr(self) -> str:
        return f"h_ratio={self.h_ratio}, w_ratio={self.w_ratio}"


def build_drop(
    method: str,
    *,
    drop_prob: float = 0.1,
    block_size: int | Sequence[int] | None = None,
    gamma_mode: str = "drop_prob",
    rescale: bool = True,
    ramp_steps: int = 0,
    bfe_ratio: Sequence[float] = (0.33, 1.0),
) -> nn.Module:
    """The drop module ``method`` (:data:`DROP_METHODS`); ``"none"`` is an identity.

    ``block_size=None`` takes the method's default: 5 for ``dropblock``, ``(5, 8)`` for
    ``dropblock_plus``. ``gamma_mode``, ``rescale`` and ``ramp_steps`` apply to both DropBlocks.
    """
    opts = {"gamma_mode": gamma_mode, "rescale": rescale, "ramp_steps": ramp_steps}
    if one_of(method, DROP_METHODS, "drop", ModelError) == "none":
        return nn.Identity()
    if method == "dropblock":
        return DropBlock(drop_prob, 5 if block_size is None else block_size, **opts)
    if method == "dropblock_plus":
        return DropBlockPlus(drop_prob, (5, 8) if block_size is None else block_size, **opts)
    ratio = tuple(bfe_ratio) if isinstance(bfe_ratio, Sequence) else ()  # "bfe"
    if len(ratio) != 2:
        raise ModelError(f"bfe_ratio must be [height_ratio, width_ratio], got {bfe_ratio!r}")
    return BatchFeatureErasing(*ratio)
