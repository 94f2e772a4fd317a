"""Training / test transforms: every augmentation is shown to act, and to act as documented."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from attnreid.data import Cutout, build_transforms
from attnreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ZhongRandomErasing
from attnreid.errors import ConfigError

#: every training option off: the training pipeline must equal the test one
OFF = {
    "flip": 0.0,
    "pad": 0,
    "rotation": 0.0,
    "translate": 0.0,
    "vflip": 0.0,
    "color_jitter": 0.0,
    "random_erasing": 0.0,
    "cutout": 0.0,
}
MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def random_image(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def train(height: int, width: int, **options: object) -> v2.Compose:
    return build_transforms(height, width, train=True, **{**OFF, **options})


def shifted(x: torch.Tensor, dy: int, dx: int, fill: torch.Tensor) -> torch.Tensor:
    """``x`` (C, H, W) moved down by ``dy`` and right by ``dx``, uncovered pixels = ``fill``."""
    h, w = x.shape[-2:]
    out = fill.expand_as(x).clone()
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def find_shift(out: torch.Tensor, base: torch.Tensor, fill: torch.Tensor, limit: int):
    """The (dy, dx) with ``out == shifted(base, dy, dx)`` exactly, or None."""
    for dy in range(-limit, limit + 1):
        for dx in range(-limit, limit + 1):
            if torch.equal(out, shifted(base, dy, dx, fill)):
                return dy, dx
    return None


def erased_box(out: torch.Tensor, base: torch.Tensor) -> tuple[int, int, int, int]:
    """The rectangle ``(top, left, h, w)`` where ``out`` differs from ``base``; asserts that
    the differing pixels form exactly that filled rectangle."""
    changed = (out != base).any(0)
    rows, cols = changed.nonzero(as_tuple=True)
    top, left = int(rows.min()), int(cols.min())
    h, w = int(rows.max()) - top + 1, int(cols.max()) - left + 1
    region = out[:, top : top + h, left : left + w]
    # one value per channel over the whole rectangle, and nothing changed outside it
    assert torch.equal(region, region[:, :1, :1].expand_as(region))
    outside = torch.ones_like(changed)
    outside[top : top + h, left : left + w] = False
    assert torch.equal(out[:, outside], base[:, outside])
    return top, left, h, w


def test_shapes_and_normalisation():
    img = Image.new("RGB", (60, 160), (120, 30, 200))
    for kw in ({}, {"pad": 10}, {"resize_crop": (288, 144)}):
        out = build_transforms(256, 128, train=True, **kw)(img)
        assert out.shape == (3, 256, 128) and out.dtype == torch.float32
    test = build_transforms(384, 128, train=False)(img)
    assert test.shape == (3, 384, 128)
    # normalisation: a constant image maps to (value - mean) / std
    for c, value in enumerate((120, 30, 200)):
        expected = (value / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(test[c], torch.full_like(test[c], expected), atol=1e-5)


def test_disabled_options_equal_the_test_transform():
    img = random_image(50, 20)  # resized to 32x16 by both pipelines
    test = build_transforms(32, 16, train=False)(img)
    for seed in range(5):
        torch.manual_seed(seed)
        assert torch.equal(train(32, 16)(img), test)
    # probability-0 erasing of either style, and the default style, change nothing either
    torch.manual_seed(0)
    assert torch.equal(train(32, 16, random_erasing_style="zhong")(img), test)


def test_horizontal_and_vertical_flip():
    img = random_image(16, 8)
    base = build_transforms(16, 8, train=False)(img)
    assert torch.equal(train(16, 8, flip=1.0)(img), base.flip(-1))
    assert torch.equal(train(16, 8, vflip=1.0)(img), base.flip(-2))
    assert torch.equal(train(16, 8, flip=1.0, vflip=1.0)(img), base.flip(-1).flip(-2))
    assert not torch.equal(base.flip(-1), base) and not torch.equal(base.flip(-2), base)


def test_pad_and_random_crop_shift_the_image():
    img = random_image(16, 12)
    base = build_transforms(16, 12, train=False)(img)
    black = (0 - MEAN) / STD  # padding is black before normalisation
    torch.manual_seed(0)
    shifts = set()
    for _ in range(30):
        shift = find_shift(train(16, 12, pad=3)(img), base, black, 3)
        assert shift is not None  # the crop of the padded image is a shifted copy
        shifts.add(shift)
    assert len(shifts) > 10  # the crop position is random, within +-pad


def test_resize_crop_is_a_crop_of_the_larger_image():
    img = random_image(40, 20)
    large = build_transforms(20, 10, train=False)(img)
    torch.manual_seed(0)
    offsets = set()
    for _ in range(20):
        out = train(16, 8, resize_crop=(20, 10))(img)
        found = [
            (t, s)
            for t in range(5)
            for s in range(3)
            if torch.equal(out, large[:, t : t + 16, s : s + 8])
        ]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 5


def test_translation_moves_the_image_by_whole_pixels():
    img = random_image(20, 20)
    base = build_transforms(20, 20, train=False)(img)
    black = (0 - MEAN) / STD
    torch.manual_seed(0)
    shifts = set()
    for _ in range(20):
        shift = find_shift(train(20, 20, translate=0.2)(img), base, black, 4)
        assert shift is not None  # translate 0.2 of 20 pixels: at most 4 in each direction
        shifts.add(shift)
    assert len(shifts) > 8 and any(dy and dx for dy, dx in shifts)


def _bright_spot(x: torch.Tensor) -> tuple[float, float]:
    """Centroid (row, col) of the bright pixels of a normalised image."""
    pix = x[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    rows, cols = (pix > 0.5).nonzero(as_tuple=True)
    assert len(rows) > 0
    return float(rows.float().mean()), float(cols.float().mean())


def test_rotation_turns_a_bright_spot_about_the_centre():
    size, rot = 41, 30.0
    arr = np.zeros((size, size, 3), dtype=np.uint8)
    arr[3:6, 19:22] = 255  # a 3x3 spot centred on (4, 20): 16 px above the centre (20, 20)
    img = Image.fromarray(arr)
    y0, x0 = _bright_spot(build_transforms(size, size, train=False)(img))
    assert (y0, x0) == (4.0, 20.0)
    torch.manual_seed(0)
    angles = []
    for _ in range(25):
        y, x = _bright_spot(train(size, size, rotation=rot)(img))
        dy, dx = y - 20.0, x - 20.0
        assert math.hypot(dy, dx) == pytest.approx(16.0, abs=1.0)  # distance kept
        # torchvision turns counter-clockwise for positive angles: up -> left
        angles.append(math.degrees(math.atan2(-dx, -dy)))
    assert max(angles) <= rot + 4 and min(angles) >= -rot - 4
    assert max(angles) > rot / 2 and min(angles) < -rot / 2  # both ways, up to +-rotation


def test_color_jitter_changes_colours_not_positions():
    img = Image.new("RGB", (8, 16), (150, 90, 60))
    base = build_transforms(16, 8, train=False)(img)
    torch.manual_seed(0)
    colours = []
    for _ in range(30):
        out = train(16, 8, color_jitter=0.4)(img)
        # a constant image stays constant: jitter acts on colours, the same at every pixel
        assert torch.allclose(out, out[:, :1, :1].expand_as(out), atol=1e-6)
        colours.append(out[:, 0, 0])
    colours = torch.stack(colours) * STD.view(1, 3) + MEAN.view(1, 3)  # back to [0, 1]
    original = base[:, 0, 0] * STD.view(3) + MEAN.view(3)
    moved = (colours - original).abs().amax(1)
    assert (moved > 0.02).float().mean() > 0.9  # almost every draw changes the colour
    assert float(colours.mean(1).std()) > 0.03  # brightness varies from draw to draw
    assert not torch.equal(train(16, 8)(img), train(16, 8, color_jitter=0.4)(img))


def test_torchvision_random_erasing_is_torchvisions_transform():
    """The default style is exactly torchvision's RandomErasing (the behaviour every preset
    had before the option existed), filling with 0 in normalised space."""
    img = random_image(32, 16)
    base = build_transforms(32, 16, train=False)(img)
    for seed in range(5):
        torch.manual_seed(seed)
        out = train(32, 16, random_erasing=1.0)(img)
        torch.manual_seed(seed)
        assert torch.equal(out, v2.RandomErasing(p=1.0, value=0)(base))
        top, left, _, _ = erased_box(out, base)
        assert torch.equal(out[:, top, left], torch.zeros(3))


def test_zhong_random_erasing_fills_with_the_normalised_mean_pixel():
    img = random_image(64, 32)
    base = build_transforms(64, 32, train=False)(img)
    # (0.4914, 0.4822, 0.4465) normalised with the ImageNet mean / std, by hand
    imagenet_fill = torch.tensor(
        [(0.4914 - 0.485) / 0.229, (0.4822 - 0.456) / 0.224, (0.4465 - 0.406) / 0.225]
    )
    torch.manual_seed(0)
    for _ in range(10):
        out = train(64, 32, random_erasing=1.0, random_erasing_style="zhong")(img)
        top, left, h, w = erased_box(out, base)
        torch.testing.assert_close(out[:, top, left], imagenet_fill)
        assert 1 <= h < 64 and 1 <= w < 32
    # with mean = std = 0.5 (GoogLeNet's): (pixel - 0.5) / 0.5
    half = build_transforms(
        64, 32, train=True, mean=(0.5,) * 3, std=(0.5,) * 3,
        **{**OFF, "random_erasing": 1.0, "random_erasing_style": "zhong"},
    )  # fmt: skip
    base_half = build_transforms(64, 32, train=False, mean=(0.5,) * 3, std=(0.5,) * 3)(img)
    out = half(img)
    top, left, _, _ = erased_box(out, base_half)
    torch.testing.assert_close(out[:, top, left], torch.tensor([-0.0172, -0.0356, -0.1070]))
    style = "random_erasing_style must be one of torchvision, zhong, got 'Zhong'"
    with pytest.raises(ConfigError, match=style):
        build_transforms(64, 32, train=True, random_erasing=0.5, random_erasing_style="Zhong")


def test_zhong_random_erasing_area_and_aspect_statistics():
    """Area fraction uniform in [0.02, 0.4], aspect ratio h / w uniform in [0.3, 1 / 0.3]
    (torchvision's: area up to 0.33, aspect log-uniform, i.e. half of the draws below 1)."""
    torch.manual_seed(0)
    erase = ZhongRandomErasing(p=1.0)
    size = 2000  # large: the pixel rounding of h and w is negligible
    boxes = [erase.box(size, size) for _ in range(4000)]
    assert all(b is not None for b in boxes)
    _, _, h, w = (np.array(v, dtype=float) for v in zip(*boxes))
    area, aspect = h * w / size**2, h / w
    assert area.min() == pytest.approx(0.02, abs=0.002) and area.max() > 0.39
    assert area.max() <= 0.401
    assert aspect.min() == pytest.approx(0.3, abs=0.01) and aspect.max() > 3.2
    assert aspect.max() <= 1 / 0.3 + 0.01
    # uniform area: about half below the middle 0.21 (draws with h or w >= the image are
    # redrawn: ~4% of them, all of area > 0.3, which moves the median slightly down)
    assert np.mean(area < 0.21) == pytest.approx(0.52, abs=0.03)
    assert np.mean(area > 0.33) > 0.1  # beyond torchvision's largest area
    # uniform aspect in [0.3, 3.33]: P(aspect < 1) = 0.7 / 3.03 = 0.23 (log-uniform: 0.5)
    assert np.mean(aspect < 1) == pytest.approx(0.23, abs=0.03)
    # every box fits, and the corner is uniform over the free positions
    tops = np.array([b[0] for b in boxes])
    assert np.all(tops + h <= size) and np.all(tops >= 0)
    # 99% of a 10x10 image: h and w cannot both stay below 10, no draw fits, nothing erased
    never = ZhongRandomErasing(p=1.0, sl=0.99, sh=0.99)
    assert never.box(10, 10) is None
    x = torch.randn(3, 10, 10)
    assert torch.equal(never(x), x)
    assert torch.equal(ZhongRandomErasing(p=0.0)(torch.ones(3, 8, 8)), torch.ones(3, 8, 8))


def test_cutout_in_the_pipeline_zeroes_a_clipped_square():
    img = random_image(40, 40)
    base = build_transforms(40, 40, train=False)(img)
    torch.manual_seed(0)
    sizes = set()
    for _ in range(20):
        out = train(40, 40, cutout=1.0, cutout_size=10)(img)
        top, left, h, w = erased_box(out, base)
        assert torch.equal(out[:, top, left], torch.zeros(3))  # the normalised mean pixel
        # a 10x10 square centred anywhere, clipped at the borders
        assert (h == 10 or top == 0 or top + h == 40) and (w == 10 or left == 0 or left + w == 40)
        assert h <= 10 and w <= 10
        sizes.add((h, w))
    assert (10, 10) in sizes


def test_cutout_zeroes_a_square():
    torch.manual_seed(0)
    x = torch.ones(3, 100, 100)
    y = Cutout(p=1.0, size=20)(x)
    zero = (y == 0).all(0)
    rows, cols = zero.nonzero(as_tuple=True)
    top, left = int(rows.min()), int(cols.min())
    h, w = int(rows.max()) - top + 1, int(cols.max()) - left + 1
    assert zero.sum() == h * w and h <= 20 and w <= 20  # one rectangle, at most 20x20
    assert (h == 20 or top == 0 or top + h == 100) and (w == 20 or left == 0 or left + w == 100)
    assert torch.equal(Cutout(p=0.0)(x), x)


def test_ccan_presets_erase_as_zhong_et_al_and_the_others_as_before():
    from attnreid.config import CONFIG_DIR, load_config

    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        t = load_config(path.stem)["data"]["transforms"]
        if path.stem.startswith("ccan"):
            assert t["random_erasing_style"] == "zhong" and t["random_erasing"] == 0.5, path
        else:
            assert t["random_erasing_style"] == "torchvision", path


def test_resize_crop_smaller_than_the_input_is_refused_in_one_line():
    """docs/errors.md row 47: refused when the pipeline is built (a ConfigError, one
    ``error:`` line from the CLI), not by torchvision inside a loader worker."""
    with pytest.raises(ConfigError, match=r"^data.transforms.resize_crop \[180, 72\] must be two"):
        build_transforms(256, 128, train=True, resize_crop=[180, 72])
    with pytest.raises(ConfigError, match=r"input's 256x128 \(data.height x data.width\)"):
        build_transforms(256, 128, train=True, resize_crop=[288])
    assert build_transforms(256, 128, train=False, resize_crop=[180, 72])  # tests only resize
