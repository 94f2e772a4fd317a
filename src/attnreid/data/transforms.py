"""Image transforms for training and test, on torchvision's ``transforms.v2``.

Training pipelines are composed from the options the papers use: resize, horizontal flip,
pad + random crop (or resize larger + random crop, as CCAN), rotation / translation and
vertical flip (SA-ResNet), random erasing (Zhong et al.) and Cutout (DeVries & Taylor).
Both erasing transforms act on the *normalised* tensor and fill with 0, i.e. with the
per-channel mean — the fill of the original random-erasing code (ImageNet mean pixel) and of
the Batch-DropBlock code's Cutout (``mean=[0, 0, 0]`` after normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    cutout: float = 0.0,
    cutout_size: int = 64,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """PIL image -> normalised float tensor (3, height, width).

    ``pad > 0``: pad by ``pad`` pixels then random-crop back to ``height x width``
    (torchreid's ``random_crop``-style pipeline of Luo et al.). ``resize_crop=(H', W')``:
    resize to the larger ``H' x W'`` then random-crop ``height x width`` (CCAN: 288x144 ->
    256x128). Test pipelines only resize and normalise.
    """
    ops: list[nn.Module] = [v2.ToImage()]
    if train and resize_crop:
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
        ops.append(v2.RandomErasing(p=random_erasing, value=0))
    if train and cutout > 0:
        ops.append(Cutout(cutout, cutout_size))
    return v2.Compose(ops)
