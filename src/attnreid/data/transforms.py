"""Image transforms for training and test, on torchvision's ``transforms.v2``.

Training pipelines are composed from the options the papers use: resize, horizontal flip,
pad + random crop (or resize larger + random crop, as CCAN), rotation / translation and
vertical flip (SA-ResNet), random erasing (Zhong et al.) and Cutout (DeVries & Taylor).
Both erasing transforms act on the *normalised* tensor.

Random erasing comes in two styles (``random_erasing_style``):

* ``"torchvision"`` (default; what every preset used before the option existed):
  torchvision's ``RandomErasing`` with its defaults — erased area a uniform fraction in
  ``[0.02, 0.33]`` of the image, aspect ratio log-uniform in ``[0.3, 3.3]``, up to 10 attempts,
  filled with 0 in normalised space (i.e. the normalisation mean pixel);
* ``"zhong"``: :class:`ZhongRandomErasing`, the defaults of Zhong et al. (Random Erasing Data
  Augmentation, AAAI 2020) and their code — area fraction uniform in ``[s_l, s_h] =
  [0.02, 0.4]``, aspect ratio ``r_e`` uniform in ``[r_1, 1 / r_1]`` with ``r_1 = 0.3``, up to
  100 attempts, filled with their mean pixel ``(0.4914, 0.4822, 0.4465)`` (an un-normalised
  RGB value in ``[0, 1]``; the fill written into the normalised tensor is
  ``(pixel - mean) / std``, so an erased region decodes to that pixel).

Cutout fills with 0 after normalisation, i.e. with the normalisation mean pixel, as the
Batch-DropBlock code's Cutout (``mean=[0, 0, 0]`` after normalisation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.transforms import v2

from attnreid.errors import ConfigError
from attnreid.utils.checks import one_of

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The fill of Zhong et al.'s random-erasing code (an RGB pixel in [0, 1], un-normalised).
ZHONG_MEAN_PIXEL = (0.4914, 0.4822, 0.4465)
RANDOM_ERASING_STYLES = ("torchvision", "zhong")


class Cutout(nn.Module):
    """With probability ``p``, zero a ``size`` x ``size`` square centred at a uniform random
    pixel (clipped at the borders, as in DeVries & Taylor 2017). Input: (C, H, W) tensor."""

    def __init__(self, p: float = 0.5, size: int = 64, value: float = 0.0) -> None:
        super().__init__()
        self.p, self.size, self.value = p, size, value

    def forward(self, img: Tensor) -> Tensor:
        if self.p <= 0 or torch.rand(()) >= self.p:
            return img
        h, w = img.shape[-2:]
        cy = int(torch.randint(h, ()))
        cx = int(torch.randint(w, ()))
        half = self.size // 2
        y0, y1 = max(cy - half, 0), min(cy + self.size - half, h)
        x0, x1 = max(cx - half, 0), min(cx + self.size - half, w)
        img = img.clone()
        img[..., y0:y1, x0:x1] = self.value
        return img

    def extra_repr(self) -> str:
        return f"p={self.p}, size={self.size}, value={self.value}"


class ZhongRandomErasing(nn.Module):
    """Random Erasing with the defaults of Zhong et al. (AAAI 2020) and their code.

    With probability ``p``: up to ``attempts`` times, draw a target area ``S_e = s * H * W``
    with ``s ~ U[sl, sh]`` and an aspect ratio ``r_e ~ U[r1, 1 / r1]``; the rectangle is
    ``h = round(sqrt(S_e * r_e))`` by ``w = round(sqrt(S_e / r_e))`` pixels; the first draw with
    ``h < H`` and ``w < W`` is placed at a uniform top-left corner and filled with ``value``
    (one number per channel, or one for all). Input: a (C, H, W) tensor (not modified).
    """

    def __init__(
        self,
        p: float = 0.5,
        sl: float = 0.02,
        sh: float = 0.4,
        r1: float = 0.3,
        value: Sequence[float] | float = 0.0,
        attempts: int = 100,
    ) -> None:
        super().__init__()
        if not 0 < sl <= sh < 1 or not 0 < r1 <= 1:
            raise ConfigError(
                f"random erasing needs 0 < sl <= sh < 1 and 0 < r1 <= 1, got sl={sl}, sh={sh}, "
                f"r1={r1}"
            )
        self.p, self.sl, self.sh, self.r1, self.attempts = p, sl, sh, r1, attempts
        fill = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
        self.register_buffer("value", torch.tensor(fill).view(-1, 1, 1), persistent=False)

    def box(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """A rectangle ``(top, left, h, w)`` drawn as described above, or None when all the
        attempts fail."""
        area = height * width
        for _ in range(self.attempts):
            target = float(torch.empty(()).uniform_(self.sl, self.sh)) * area
            ratio = float(torch.empty(()).uniform_(self.r1, 1 / self.r1))
            h = round(math.sqrt(target * ratio))
            w = round(math.sqrt(target / ratio))
            if h < height and w < width:
                top = int(torch.randint(height - h + 1, ()))
                left = int(torch.randint(width - w + 1, ()))
                return top, left, h, w
        return None

    def forward(self, img: Tensor) -> Tensor:
        if self.p <= 0 or float(torch.rand(())) >= self.p:
            return img
        box = self.box(*img.shape[-2:])
        if box is None:
            return img
        top, left, h, w = box
        img = img.clone()
        region = img[..., top : top + h, left : left + w]
        region[...] = self.value.to(img.dtype).expand_as(region)
        return img

    def extra_repr(self) -> str:
        fill = ", ".join(f"{v:.4g}" for v in self.value.flatten().tolist())
        return (
            f"p={self.p}, area=[{self.sl}, {self.sh}], aspect=[{self.r1}, {1 / self.r1:.3g}], "
            f"value=({fill}), attempts={self.attempts}"
        )


def build_transforms(
    height: int,
    width: int,
    *,
    train: bool,
    flip: float = 0.5,
    pad: int = 0,
    resize_crop: Sequence[int] | None = None,
    rotation: float = 0.0,
    translate: float = 0.0,
    vflip: float = 0.0,
    color_jitter: float = 0.0,
    random_erasing: float = 0.0,
    random_erasing_style: str = "torchvision",
    cutout: float = 0.0,
    cutout_size: int = 64,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """PIL image -> normalised float tensor (3, height, width).

    ``pad > 0``: pad by ``pad`` pixels then random-crop back to ``height x width``
    (torchreid's ``random_crop``-style pipeline of Luo et al.). ``resize_crop=(H', W')``:
    resize to the larger ``H' x W'`` then random-crop ``height x width`` (CCAN: 288x144 ->
    256x128). ``random_erasing_style``: ``"torchvision"`` or ``"zhong"`` (see the module
    docstring). Test pipelines only resize and normalise.
    """
    one_of(random_erasing_style, RANDOM_ERASING_STYLES, "data.transforms.random_erasing_style")
    ops: list[nn.Module] = [v2.ToImage()]
    if train and resize_crop:
        if len(resize_crop) != 2 or resize_crop[0] < height or resize_crop[1] < width:
            raise ConfigError(
                f"data.transforms.resize_crop {list(resize_crop)} must be two sizes at least "
                f"the input's {height}x{width} (data.height x data.width): it is cropped to it"
            )
        ops += [v2.Resize(tuple(resize_crop), antialias=True), v2.RandomCrop((height, width))]
    else:
        ops.append(v2.Resize((height, width), antialias=True))
    if train:
        if flip > 0:
            ops.append(v2.RandomHorizontalFlip(flip))
        if vflip > 0:
            ops.append(v2.RandomVerticalFlip(vflip))
        if pad > 0:
            ops += [v2.Pad(pad), v2.RandomCrop((height, width))]
        if rotation > 0 or translate > 0:
            ops.append(v2.RandomAffine(degrees=rotation, translate=(translate, translate)))
        if color_jitter > 0:
            cj = color_jitter
            ops.append(
                v2.ColorJitter(brightness=cj, contrast=cj, saturation=cj, hue=min(cj, 0.5) / 4)
            )
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if train and random_erasing > 0:
        if random_erasing_style == "zhong":
            fill = [(v - m) / sd for v, m, sd in zip(ZHONG_MEAN_PIXEL, mean, std)]
            ops.append(ZhongRandomErasing(p=random_erasing, value=fill))
        else:
            ops.append(v2.RandomErasing(p=random_erasing, value=0))
    if train and cutout > 0:
        ops.append(Cutout(cutout, cutout_size))
    return v2.Compose(ops)


def input_stats(model: object, cfg: dict[str, Any]) -> tuple[Any, Any]:
    """The normalisation ``(mean, std)`` of a model's input: the one its weights expect
    (``data.normalization: backbone``, the model's ``input_mean`` / ``input_std``), or
    ImageNet's (``imagenet``). An exported graph (``fixed_input``) is always fed as its file
    says, whatever the config."""
    norm = cfg["data"].get("normalization", "backbone")
    one_of(norm, ("backbone", "imagenet"), "data.normalization")
    if norm == "imagenet" and not getattr(model, "fixed_input", False):
        return IMAGENET_MEAN, IMAGENET_STD
    return getattr(model, "input_mean", IMAGENET_MEAN), getattr(model, "input_std", IMAGENET_STD)
