"""Camera backgrounds and foreground occluders.

Each camera looks at one fixed scene. The scene is drawn once per camera as a wide panorama
(a street facade, a corridor, a plaza, a shop front, a park, a station hall) with its own wall
and floor colours, texture and clutter; every image of that camera crops a window of it at a
random horizontal position, as a detector box around people walking past would. Backgrounds
therefore differ strongly between cameras and are similar within one, which is what makes raw
pixel matching camera-driven instead of identity-driven.

Occluders (pole, bench, car bonnet, bin, sign) are drawn over the person; the "other person"
occluder needs the person renderer and lives in :mod:`.render`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .camera import Camera
from .parts import shade

RGB = tuple[int, int, int]


def _rgb(c: np.ndarray | tuple[float, ...]) -> RGB:
    a = np.clip(np.round(np.asarray(c, dtype=np.float64)), 0, 255).astype(int)
    return int(a[0]), int(a[1]), int(a[2])


def _rand_color(rng: np.random.Generator, lo: int = 20, hi: int = 235) -> RGB:
    return _rgb(rng.uniform(lo, hi, size=3))


def _vgradient(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], top: RGB, bottom: RGB, step: int = 4
) -> None:
    x0, y0, x1, y1 = box
    n = max(1, (y1 - y0 + step - 1) // step)
    t, b = np.asarray(top, float), np.asarray(bottom, float)
    for i in range(n):
        f = i / max(1, n - 1)
        ya = y0 + i * step
        draw.rectangle((x0, ya, x1, min(y1, ya + step)), fill=_rgb(t * (1 - f) + b * f))


SCENE_COLORS: dict[str, tuple[tuple[RGB, ...], tuple[RGB, ...]]] = {
    # kind: (wall colours, floor colours)
    "street": (
        ((150, 96, 74), (186, 170, 146), (120, 120, 124), (196, 186, 160)),
        ((128, 126, 122), (96, 94, 92), (150, 140, 126)),
    ),
    "corridor": (
        ((214, 210, 196), (182, 200, 184), (206, 190, 160), (170, 176, 190)),
        ((150, 130, 110), (90, 100, 110), (186, 180, 170)),
    ),
    "plaza": (
        ((176, 196, 214), (206, 214, 220), (160, 170, 178)),
        ((190, 178, 160), (160, 156, 150), (206, 196, 178)),
    ),
    "shopfront": (
        ((52, 56, 64), (90, 70, 60), (40, 60, 70)),
        ((70, 70, 72), (110, 100, 90), (54, 50, 48)),
    ),
    "park": (
        ((60, 96, 52), (86, 112, 64), (44, 76, 50)),
        ((80, 120, 56), (104, 136, 66), (170, 150, 110)),
    ),
    "station": (
        ((226, 226, 220), (200, 196, 180), (164, 170, 176)),
        ((120, 120, 120), (164, 160, 150), (88, 88, 92)),
    ),
}


def _facade(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, hz: int, wall: RGB
) -> None:
    brick = rng.random() < 0.5
    if brick:
        row = int(rng.integers(5, 9))
        for y in range(0, hz, row):
            draw.line((0, y, w, y), fill=shade(wall, 0.8), width=1)
            off = (y // row) % 2 * row
            for x in range(off, w, 2 * row + 4):
                draw.line((x, y, x, y + row), fill=shade(wall, 0.82), width=1)
    win_w, win_h = int(rng.integers(24, 48)), int(rng.integers(30, 60))
    gap = int(rng.integers(14, 40))
    glass = _rgb(rng.uniform(30, 110, size=3))
    frame = shade(wall, rng.uniform(0.5, 1.3))
    y = int(rng.integers(4, 20))
    while y + win_h < hz - 30:
        x = int(rng.integers(0, gap))
        while x + win_w < w:
            draw.rectangle((x - 3, y - 3, x + win_w + 3, y + win_h + 3), fill=frame)
            draw.rectangle((x, y, x + win_w, y + win_h), fill=glass)
            draw.line((x, y + win_h // 2, x + win_w, y + win_h // 2), fill=frame, width=2)
            x += win_w + gap
        y += win_h + int(rng.integers(16, 34))
    for _ in range(int(rng.integers(1, 4))):  # doors and shop signs at street level
        x = int(rng.integers(0, w - 60))
        dw, dh = int(rng.integers(34, 60)), int(rng.integers(60, 100))
        draw.rectangle((x, hz - dh, x + dw, hz), fill=shade(_rand_color(rng, 20, 140), 1.0))
        draw.rectangle((x - 10, hz - dh - 22, x + dw + 10, hz - dh - 6), fill=_rand_color(rng))


def _corridor(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, hz: int, wall: RGB
) -> None:
    band = int(hz * rng.uniform(0.65, 0.8))
    draw.rectangle((0, band, w, hz), fill=shade(wall, rng.uniform(0.55, 0.85)))
    step = int(rng.integers(50, 110))
    for x in range(int(rng.integers(0, step)), w, step):
        draw.line((x, 0, x, hz), fill=shade(wall, 0.78), width=2)
    draw.rectangle((0, 0, w, int(rng.integers(6, 16))), fill=(250, 250, 240))
    for _ in range(int(rng.integers(2, 5))):  # doors
        x = int(rng.integers(0, w - 60))
        dw, dh = int(rng.integers(40, 60)), int(hz * rng.uniform(0.6, 0.85))
        door = _rand_color(rng, 60, 200)
        draw.rectangle((x - 4, hz - dh - 4, x + dw + 4, hz), fill=shade(door, 0.6))
        draw.rectangle((x, hz - dh, x + dw, hz), fill=door)
        draw.ellipse((x + dw - 10, hz - dh // 2, x + dw - 5, hz - dh // 2 + 5), fill=(60, 60, 60))
    for _ in range(int(rng.integers(2, 6))):  # posters
        x, y = int(rng.integers(0, w - 40)), int(rng.integers(10, max(12, band - 60)))
        draw.rectangle(
            (x, y, x + int(rng.integers(20, 46)), y + int(rng.integers(28, 60))),
            fill=_rand_color(rng),
        )


def _plaza(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, hz: int, wall: RGB) -> None:
    _vgradient(draw, (0, 0, w, hz), shade(wall, 1.1), shade(wall, 0.95), step=6)
    x = 0
    while x < w:  # distant buildings
        bw, bh = int(rng.integers(40, 120)), int(hz * rng.uniform(0.3, 0.85))
        draw.rectangle((x, hz - bh, x + bw, hz), fill=_rand_color(rng, 90, 200))
        x += bw + int(rng.integers(0, 30))
    for _ in range(int(rng.integers(3, 7))):  # trees
        tx, r = int(rng.integers(0, w)), int(rng.integers(18, 40))
        ty = int(hz * rng.uniform(0.2, 0.5))
        draw.rectangle((tx - 4, ty, tx + 4, hz), fill=(80, 60, 40))
        draw.ellipse(
            (tx - r, ty - r, tx + r, ty + r), fill=_rgb(rng.uniform((30, 70, 30), (90, 140, 70)))
        )
    draw.rectangle((0, hz - int(rng.integers(10, 26)), w, hz), fill=_rand_color(rng, 120, 200))


def _shopfront(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, hz: int, wall: RGB
) -> None:
    sign_h = int(rng.integers(16, 30))
    draw.rectangle((0, 0, w, sign_h), fill=_rand_color(rng, 40, 230))
    for x in range(4, w - 10, 12):  # letters on the sign band
        if rng.random() < 0.7:
            draw.rectangle((x, sign_h // 3, x + 7, 2 * sign_h // 3), fill=(245, 245, 240))
    glass = _rgb(rng.uniform((60, 80, 90), (140, 160, 170)))
    draw.rectangle((0, sign_h + 4, w, hz - 12), fill=glass)
    shelf = int(rng.integers(22, 34))
    for y in range(sign_h + 12, hz - 20, shelf):
        draw.line((0, y + shelf - 4, w, y + shelf - 4), fill=shade(glass, 0.6), width=3)
        x = int(rng.integers(0, 8))
        while x < w:
            pw = int(rng.integers(5, 14))
            product = 0.45 * np.asarray(_rand_color(rng)) + 0.55 * np.asarray(glass)
            draw.rectangle(
                (x, y + int(rng.integers(4, 12)), x + pw, y + shelf - 5), fill=_rgb(product)
            )
            x += pw + int(rng.integers(1, 6))
    for _ in range(int(rng.integers(3, 7))):  # reflections
        x = int(rng.integers(0, w))
        draw.line((x, hz - 12, x + 50, sign_h + 4), fill=shade(glass, 1.45), width=4)
    step = int(rng.integers(80, 140))
    for x in range(0, w, step):
        draw.rectangle((x, sign_h, x + 6, hz), fill=shade(wall, 1.2))


def _park(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, hz: int, wall: RGB) -> None:
    _vgradient(draw, (0, 0, w, hz // 3), (200, 214, 226), wall, step=6)
    for _ in range(int(w / 6)):  # foliage
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, hz)), int(rng.integers(8, 26))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=shade(wall, rng.uniform(0.55, 1.35)))
    for _ in range(int(rng.integers(2, 6))):
        tx, tw = int(rng.integers(0, w)), int(rng.integers(6, 16))
        draw.rectangle((tx, int(hz * rng.uniform(0.2, 0.6)), tx + tw, hz), fill=(70, 52, 38))


def _station(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, hz: int, wall: RGB
) -> None:
    step = int(rng.integers(90, 160))
    pillar = shade(wall, rng.uniform(0.6, 0.85))
    for x in range(int(rng.integers(0, step)), w, step):
        draw.rectangle((x, 0, x + int(rng.integers(14, 24)), hz), fill=pillar)
    for _ in range(int(rng.integers(1, 3))):  # timetable boards
        x, y = int(rng.integers(0, w - 80)), int(hz * rng.uniform(0.1, 0.3))
        bw, bh = int(rng.integers(50, 90)), int(rng.integers(30, 50))
        draw.rectangle((x, y, x + bw, y + bh), fill=(24, 28, 40))
        for ly in range(y + 5, y + bh - 3, 6):
            draw.line((x + 4, ly, x + int(bw * rng.uniform(0.4, 0.95)), ly), fill=(230, 200, 90))
    rail = int(hz * rng.uniform(0.55, 0.75))
    draw.line((0, rail, w, rail), fill=(120, 124, 130), width=3)
    for x in range(0, w, 22):
        draw.line((x, rail, x, hz), fill=(120, 124, 130), width=2)


_KIND_DRAW = {
    "street": _facade,
    "corridor": _corridor,
    "plaza": _plaza,
    "shopfront": _shopfront,
    "park": _park,
    "station": _station,
}


@lru_cache(maxsize=16)
def panorama(camera: Camera, width: int, height: int) -> Image.Image:
    """The camera's scene as a ``4 * width`` x ``1.15 * height`` image (cached per process)."""
    rng = np.random.default_rng(np.random.SeedSequence(list(camera.scene_entropy)))
    pw, ph = 4 * width, round(1.15 * height)
    walls, floors = SCENE_COLORS[camera.scene_kind]
    wall = _rgb(np.asarray(walls[int(rng.integers(len(walls)))]) * rng.uniform(0.85, 1.1, 3))
    floor = _rgb(np.asarray(floors[int(rng.integers(len(floors)))]) * rng.uniform(0.85, 1.1, 3))
    hz = int(camera.horizon * ph)
    img = Image.new("RGB", (pw, ph), wall)
    draw = ImageDraw.Draw(img, "RGBA")
    _vgradient(draw, (0, 0, pw, hz), shade(wall, 1.06), shade(wall, 0.9))
    _KIND_DRAW[camera.scene_kind](draw, rng, pw, hz, wall)

    _vgradient(draw, (0, hz, pw, ph), shade(floor, 0.9), shade(floor, 1.08))
    joint = shade(floor, rng.uniform(0.7, 0.85))
    y, gap = hz + 4, float(rng.uniform(5, 9))
    while y < ph:  # floor joints, spaced wider towards the camera
        draw.line((0, int(y), pw, int(y)), fill=joint, width=1)
        y += gap
        gap *= 1.25
    vp = int(rng.integers(0, pw))
    for x in range(-pw, 2 * pw, int(rng.integers(30, 60))):
        draw.line((vp + (x - vp) * 0.25, hz, x, ph), fill=joint, width=1)
    if camera.scene_kind == "station":
        draw.rectangle((0, hz + (ph - hz) // 3, pw, hz + (ph - hz) // 3 + 8), fill=(220, 190, 40))
    draw.line((0, hz, pw, hz), fill=shade(wall, 0.5), width=2)

    for _ in range(int(rng.integers(4, 12))):  # generic clutter: boxes, posters, cables, lamps
        kind = rng.random()
        x, y = int(rng.integers(0, pw)), int(rng.integers(0, ph))
        col = (*_rand_color(rng), int(rng.integers(120, 256)))
        if kind < 0.45:
            draw.rectangle(
                (x, y, x + int(rng.integers(6, 40)), y + int(rng.integers(6, 40))), fill=col
            )
        elif kind < 0.75:
            draw.line(
                (x, y, x + int(rng.integers(-80, 80)), y + int(rng.integers(-30, 30))),
                fill=col,
                width=int(rng.integers(1, 4)),
            )
        else:
            r = int(rng.integers(4, 14))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=col)

    arr = np.asarray(img, dtype=np.float32)
    tex = rng.normal(0.0, rng.uniform(4.0, 12.0), size=(ph // 4 + 1, pw // 4 + 1, 1))
    tex = np.repeat(np.repeat(tex, 4, axis=0), 4, axis=1)[:ph, :pw]
    light = np.linspace(1.0 - 0.15 * camera.light_side, 1.0 + 0.15 * camera.light_side, pw)
    arr = (arr + tex) * light[None, :, None].astype(np.float32)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return out.filter(ImageFilter.GaussianBlur(0.6))


def background(camera: Camera, rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A ``width`` x ``height`` window of the camera's panorama plus per-image clutter."""
    pano = panorama(camera, width, height)
    x = int(rng.integers(0, pano.width - width))
    y = int(rng.integers(0, pano.height - height + 1))
    img = pano.crop((x, y, x + width, y + height))
    draw = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.poisson(1.2))):  # passers-by far away, litter, shadows
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            h = int(rng.integers(height // 6, height // 3))
            col = (*_rand_color(rng, 20, 200), 200)
            draw.rectangle((cx, cy, cx + h // 4, cy + h), fill=col)
            draw.ellipse((cx, cy - h // 6, cx + h // 4, cy), fill=col)
        else:
            draw.rectangle(
                (cx, cy, cx + int(rng.integers(8, 40)), cy + int(rng.integers(4, 24))),
                fill=(0, 0, 0, int(rng.integers(30, 90))),
            )
    return img


def draw_occluder(img: Image.Image, kind: str, rng: np.random.Generator) -> None:
    """Draw a static occluder of ``kind`` (see :data:`.camera.OCCLUDERS`) over ``img``."""
    w, h = img.size
    draw = ImageDraw.Draw(img, "RGBA")
    if kind == "pole":
        pw = int(w * rng.uniform(0.06, 0.14))
        x = int(rng.uniform(0.0, 1.0) * (w - pw))
        col = _rgb(rng.uniform(30, 160, size=3))
        draw.rectangle((x, 0, x + pw, h), fill=col)
        draw.rectangle((x + pw // 4, 0, x + pw // 2, h), fill=shade(col, 1.35))
        if rng.random() < 0.4:  # a sign on the pole
            sy = int(rng.uniform(0.05, 0.4) * h)
            draw.rectangle((x - pw, sy, x + 2 * pw, sy + int(h * 0.12)), fill=_rand_color(rng))
    elif kind == "bench":
        top = int(h * rng.uniform(0.68, 0.82))
        col = _rgb(rng.uniform((90, 50, 20), (180, 130, 80)))
        for i in range(3):
            y = top + i * int(h * 0.05)
            draw.rectangle((0, y, w, y + int(h * 0.03)), fill=shade(col, 1.0 - 0.12 * i))
        for x in (int(w * 0.15), int(w * 0.8)):
            draw.rectangle((x, top, x + int(w * 0.06), h), fill=(50, 50, 54))
    elif kind == "car":
        top = int(h * rng.uniform(0.72, 0.86))
        col = _rand_color(rng, 10, 240)
        draw.ellipse((-w * 0.6, top, w * 1.6, top + (h - top) * 3.0), fill=col)
        draw.arc(
            (-w * 0.5, top + 6, w * 1.5, top + (h - top) * 3.0),
            190,
            350,
            fill=shade(col, 1.5),
            width=3,
        )
    elif kind == "bin":
        bw = int(w * rng.uniform(0.25, 0.4))
        side = rng.random() < 0.5
        x0 = -bw // 4 if side else w - bw + bw // 4
        top = int(h * rng.uniform(0.62, 0.78))
        col = _rgb(rng.uniform(20, 120, size=3))
        draw.rectangle((x0, top, x0 + bw, h), fill=col)
        draw.rectangle((x0 - 3, top - 6, x0 + bw + 3, top + 2), fill=shade(col, 0.7))
    elif kind == "sign":
        sw = int(w * rng.uniform(0.3, 0.5))
        x0 = int(rng.uniform(-0.2, 0.9) * w)
        top = int(h * rng.uniform(0.55, 0.75))
        draw.polygon([(x0, h), (x0 + sw // 2, top), (x0 + sw, h)], fill=_rand_color(rng))
        draw.line(
            (x0 + sw // 4, (h + top) // 2, x0 + 3 * sw // 4, (h + top) // 2),
            fill=(250, 250, 250),
            width=3,
        )
    else:
        raise ValueError(f"unknown occluder {kind!r}")
