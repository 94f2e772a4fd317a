from __future__ import annotations

import torch
from PIL import Image

from attnreid.data import Cutout, build_transforms


def test_train_and_test_shapes():
    img = Image.new("RGB", (60, 160), (120, 30, 200))
    for kw in (
        {},
        {"pad": 10},
        {"resize_crop": (288, 144)},
        {
            "rotation": 10,
            "translate": 0.1,
            "vflip": 0.5,
            "random_erasing": 1.0,
            "cutout": 1.0,
            "color_jitter": 0.2,
        },
    ):
        out = build_transforms(256, 128, train=True, **kw)(img)
        assert out.shape == (3, 256, 128) and out.dtype == torch.float32
    test = build_transforms(384, 128, train=False)(img)
    assert test.shape == (3, 384, 128)
    # normalisation: a constant image maps to (value - mean) / std
    expected = (120 / 255 - 0.485) / 0.229
    assert torch.allclose(test[0], torch.full_like(test[0], expected), atol=1e-4)


def test_cutout_zeroes_a_square():
    torch.manual_seed(0)
    x = torch.ones(3, 100, 100)
    y = Cutout(p=1.0, size=20)(x)
    zero = (y == 0).all(0)
    assert 0 < zero.sum() <= 400
    rows, cols = zero.nonzero(as_tuple=True)
    assert rows.max() - rows.min() < 20 and cols.max() - cols.min() < 20
    assert torch.equal(Cutout(p=0.0)(x), x)
