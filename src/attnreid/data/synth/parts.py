"""Drawing primitives of the person renderer: the painter, garment patterns and the head.

:class:`Painter` fills lists of shapes (polygons, ellipses, lines and tapered "limbs" with
rounded ends) with a colour or a :class:`Pattern` (a texture pasted through a mask of the
shapes). :func:`upper_fill` builds the upper garment's texture for a view (stripes, checks,
a two-tone yoke or left/right halves); :func:`draw_head` draws the head with the hair style
or headwear as seen from the front, the back or the side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .identity import RGB, Identity

Shape = tuple  # ("poly", points) | ("ellipse", box) | ("limb", p0, p1, r0, r1) | ("line", ...)


@dataclass(frozen=True)
class Pattern:
    """An RGBA garment texture covering the canvas region that starts at ``origin``."""

    image: Image.Image
    origin: tuple[int, int]


Fill = RGB | Pattern


def shade(c: RGB, f: float) -> RGB:
    return tuple(int(min(255, max(0, round(v * f)))) for v in c)  # type: ignore[return-value]


class Painter:
    def __init__(self, layer: Image.Image) -> None:
        self.layer = layer
        self.draw = ImageDraw.Draw(layer)

    @staticmethod
    def _render(draw: ImageDraw.ImageDraw, shapes: list[Shape], fill: object) -> None:
        for s in shapes:
            if s[0] == "poly":
                draw.polygon(s[1], fill=fill)
            elif s[0] == "ellipse":
                draw.ellipse(s[1], fill=fill)
            elif s[0] == "line":
                draw.line(s[1], fill=fill, width=max(1, round(s[2])))
            else:  # limb: a tapered segment with rounded ends
                (x0, y0), (x1, y1), r0, r1 = s[1], s[2], s[3], s[4]
                length = math.hypot(x1 - x0, y1 - y0) or 1e-6
                nx, ny = -(y1 - y0) / length, (x1 - x0) / length
                draw.polygon(
                    [
                        (x0 + nx * r0, y0 + ny * r0),
                        (x1 + nx * r1, y1 + ny * r1),
                        (x1 - nx * r1, y1 - ny * r1),
                        (x0 - nx * r0, y0 - ny * r0),
                    ],
                    fill=fill,
                )
                draw.ellipse((x0 - r0, y0 - r0, x0 + r0, y0 + r0), fill=fill)
                draw.ellipse((x1 - r1, y1 - r1, x1 + r1, y1 + r1), fill=fill)

    def paint(self, shapes: list[Shape], fill: Fill) -> None:
        if isinstance(fill, Pattern):
            mask = Image.new("L", self.layer.size, 0)
            self._render(ImageDraw.Draw(mask), shapes, 255)
            x, y = fill.origin
            box = (x, y, x + fill.image.width, y + fill.image.height)
            self.layer.paste(fill.image, box, mask.crop(box))
        else:
            self._render(self.draw, shapes, (*fill, 255))


def upper_fill(
    ident: Identity,
    view: str,
    size: tuple[int, int],
    cx: float,
    top_y: float,
    chest_y: float,
    H: float,
) -> Fill:
    """The upper garment's fill: a colour, or an RGBA image holding the pattern."""
    base, second, p = ident.upper_color, ident.upper_second, ident.upper_pattern
    if p in ("solid", "logo"):
        return base
    if p == "twotone" and ident.pattern_variant == 1:  # left/right halves
        left, right = base, second  # colour of the person's left / right half
        if view in ("left", "right"):  # facing image-left we see the person's right side
            return right if view == "left" else left
        w, h = size
        img = Image.new("RGBA", size, (*left, 255))
        x0 = round(cx)
        near = (*right, 255)  # front: person's right is on the image left
        img.paste(near, (0, 0, x0, h) if view == "front" else (x0, 0, w, h))
        return Pattern(img, (0, 0))
    period = max(3.0, ident.pattern_scale * H)
    # only the region the shirt and sleeves can cover
    x0, y0 = max(0, int(cx - 0.45 * H)), max(0, int(top_y - 0.06 * H))
    x1, y1 = min(size[0], int(cx + 0.45 * H) + 1), min(size[1], int(top_y + 0.6 * H) + 1)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    w, h = x1 - x0, y1 - y0
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] - top_y
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    if p == "hstripes":
        m = np.broadcast_to((ys // period) % 2 == 1, (h, w))
    elif p == "vstripes":
        m = np.broadcast_to((xs // (0.8 * period)) % 2 == 1, (h, w))
    elif p == "checks" and ident.pattern_variant == 0:
        m = ((ys // period) + (xs // period)) % 2 == 1
    elif p == "checks":  # plaid: thin crossing lines
        m = ((ys % period) < period / 3) | ((xs % period) < period / 3)
    else:  # two-tone top/bottom (a yoke in the second colour)
        m = np.broadcast_to(ys < (chest_y - top_y), (h, w))
    arr = np.where(m[..., None], np.array(second, np.uint8), np.array(base, np.uint8))
    alpha = np.full((h, w, 1), 255, np.uint8)
    return Pattern(Image.fromarray(np.concatenate([arr, alpha], axis=2), "RGBA"), (x0, y0))


def draw_head(
    pt: Painter, ident: Identity, view: str, hx: float, top: float, H: float, facing: int = 1
) -> None:
    """Head, hair and headwear. ``facing`` is +1/-1 (image direction) for side views."""
    hh = ident.head_size * H
    side = view in ("left", "right")
    hw = hh * (0.86 if side else 0.78)
    hy = top + hh / 2
    skin, hair, style = ident.skin, ident.hair_color, ident.hair_style
    box = (hx - hw / 2, top, hx + hw / 2, top + hh)
    pt.paint(
        [
            (
                "limb",
                (hx, hy),
                (hx + (0.08 * hw * facing if side else 0), top + hh * 1.25),
                hw * 0.2,
                hw * 0.2,
            )
        ],
        shade(skin, 0.85),
    )  # neck
    if style == "long" and view != "front":  # hair falling behind the head / down the back
        x0 = hx - (0.55 * hw if not side else (0.6 * hw if facing > 0 else -0.05 * hw))
        x1 = x0 + (1.1 * hw if not side else 0.65 * hw)
        pt.paint(
            [
                (
                    "poly",
                    [
                        (x0, hy),
                        (x1, hy),
                        (x1 + 0.05 * hw, top + hh * 2.0),
                        (x0 - 0.05 * hw, top + hh * 2.0),
                    ],
                )
            ],
            hair,
        )
    if style in ("short", "long") and view != "back":
        pt.paint(
            [
                (
                    "ellipse",
                    (
                        box[0] - 0.05 * hw - (0.12 * hw * facing if side else 0),
                        top - 0.06 * hh,
                        box[2] + 0.05 * hw - (0.12 * hw * facing if side else 0),
                        top + hh * 0.8,
                    ),
                )
            ],
            hair,
        )
        face = (
            box[0] + (0.08 * hw * facing if side else 0.02 * hw),
            top + hh * 0.28,
            box[2] + (0.04 * hw * facing if side else -0.02 * hw),
            top + hh,
        )
        pt.paint([("ellipse", face)], skin)
        if style == "long" and view == "front":
            for sx in (-1, 1):
                x = hx + sx * 0.5 * hw
                pt.paint(
                    [
                        (
                            "limb",
                            (x, top + hh * 0.35),
                            (x + sx * 0.08 * hw, top + hh * 1.7),
                            0.16 * hw,
                            0.2 * hw,
                        )
                    ],
                    hair,
                )
    elif view == "back" and style in ("short", "long"):
        pt.paint(
            [
                (
                    "ellipse",
                    (
                        box[0] - 0.04 * hw,
                        top - 0.05 * hh,
                        box[2] + 0.04 * hw,
                        top + hh * (0.98 if style == "long" else 0.9),
                    ),
                )
            ],
            hair,
        )
    else:
        pt.paint([("ellipse", box)], skin)
    if style in ("cap", "hat"):
        crown = (box[0] - 0.04 * hw, top - 0.1 * hh, box[2] + 0.04 * hw, top + hh * 0.75)
        if view == "back":  # hair under the cap
            pt.paint([("ellipse", (box[0], top + 0.2 * hh, box[2], top + hh * 0.95))], hair)
        col = ident.headwear_color
        if style == "cap":
            pt.paint([("poly", half_ellipse(crown))], col)
            by = top + hh * 0.34
            if side:
                tip = hx + facing * hw * 0.95
                pt.paint(
                    [("poly", [(hx, by - 0.08 * hh), (tip, by), (hx, by + 0.06 * hh)])],
                    shade(col, 0.8),
                )
            elif view == "front":
                pt.paint(
                    [
                        (
                            "ellipse",
                            (box[0] - 0.1 * hw, by - 0.06 * hh, box[2] + 0.1 * hw, by + 0.1 * hh),
                        )
                    ],
                    shade(col, 0.8),
                )
        else:
            by = top + hh * 0.3
            pt.paint(
                [
                    ("ellipse", (hx - 0.95 * hw, by - 0.1 * hh, hx + 0.95 * hw, by + 0.12 * hh)),
                    (
                        "poly",
                        [
                            (box[0] + 0.05 * hw, by),
                            (box[0] + 0.12 * hw, top - 0.25 * hh),
                            (box[2] - 0.12 * hw, top - 0.25 * hh),
                            (box[2] - 0.05 * hw, by),
                        ],
                    ),
                ],
                col,
            )
    if view == "front":
        r = max(1.0, 0.05 * hw)
        for sx in (-1, 1):
            ex, ey = hx + sx * 0.2 * hw, top + 0.58 * hh
            pt.paint([("ellipse", (ex - r, ey - r, ex + r, ey + r))], shade(skin, 0.35))
    elif side:
        ex, ey, r = hx + facing * 0.3 * hw, top + 0.58 * hh, max(1.0, 0.05 * hw)
        pt.paint([("ellipse", (ex - r, ey - r, ex + r, ey + r))], shade(skin, 0.35))


def half_ellipse(box: tuple[float, float, float, float], n: int = 10) -> list[tuple]:
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return [
        (cx - rx * math.cos(math.pi * i / n), cy - ry * math.sin(math.pi * i / n))
        for i in range(n + 1)
    ]
