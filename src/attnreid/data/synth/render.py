"""Composing one image: scene window, person, occluders, then the camera pipeline.

Every function here takes its own :class:`numpy.random.Generator` (one per image, see
:mod:`.generator`) and draws from it in a fixed order, so an image depends only on its seed.
Images are drawn at :data:`SUPERSAMPLE` times the output size and downsampled with LANCZOS,
which anti-aliases the polygon edges.

Per image, on top of the camera model: the viewpoint (mostly the camera's dominant one), the
walking pose, scale and position jitter of the detector box, occasional cut-off heads or feet,
the background window and its clutter, an occluder with the camera's probability (including
part of another pedestrian), and jittered exposure / colour cast (in :func:`.apply_camera`).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .camera import OCCLUDERS, VIEWS, Camera, apply_camera, sample_view
from .identity import Identity, sample_identity
from .person import draw_person, sample_pose
from .scene import background, draw_occluder

SUPERSAMPLE = 2


def _place(
    img: Image.Image,
    ident: Identity,
    view: str,
    cx: float,
    feet_y: float,
    H: float,
    camera: Camera,
    rng: np.random.Generator,
    shadow: bool = True,
) -> None:
    """Draw ``ident`` onto ``img`` (in place) with a fresh walking pose and a ground shadow."""
    pose = sample_pose(view, rng)
    if shadow:
        draw = ImageDraw.Draw(img, "RGBA")
        w = 0.16 * H
        dx = 0.06 * H * camera.light_side
        draw.ellipse(
            (cx - w + dx, feet_y - 0.018 * H, cx + w + dx, feet_y + 0.022 * H), fill=(0, 0, 0, 70)
        )
    layer = draw_person(img.size, ident, pose, cx, feet_y, H, rng, light=camera.light_side)
    img.paste(layer, (0, 0), layer)


def _other_person(
    img: Image.Image, H: float, feet_y: float, camera: Camera, rng: np.random.Generator
) -> None:
    """Part of another pedestrian at the side of the box, usually closer to the camera."""
    w = img.size[0]
    other = sample_identity(rng)
    view = VIEWS[int(rng.integers(len(VIEWS)))]
    side = 1 if rng.random() < 0.5 else -1
    cx = w / 2 + side * w * rng.uniform(0.5, 0.85)
    H2 = H * rng.uniform(0.95, 1.25)
    _place(img, other, view, cx, feet_y + H * rng.uniform(0.0, 0.12), H2, camera, rng, shadow=False)


def _geometry(
    camera: Camera, ident: Identity, rng: np.random.Generator, w: int, h: int
) -> tuple[float, float, float]:
    """Person centre x, ground line y and height, with the camera's box misalignment."""
    H = h * camera.person_scale * math.sqrt(ident.stature) * float(np.exp(rng.normal(0, 0.04)))
    cx = w / 2 + (camera.offset_x + rng.normal(0.0, camera.jitter)) * w
    feet_y = (h + H) / 2 + (camera.offset_y + rng.normal(0.0, camera.jitter * 0.7)) * h
    if rng.random() < camera.cut_prob:
        cut = rng.integers(3)
        if cut == 0:  # head cut: box starts below the crown
            feet_y -= (h - H) / 2 + H * rng.uniform(0.04, 0.12)
        elif cut == 1:  # feet cut: box ends above the shoes
            feet_y += (h - H) / 2 + H * rng.uniform(0.04, 0.15)
        else:  # box too tight: zoomed in, both ends touch the borders
            H *= rng.uniform(1.08, 1.2)
            feet_y = (h + H) / 2 + rng.normal(0.0, 0.03) * h
    return cx, feet_y, H


def render_identity_image(
    ident: Identity, camera: Camera, rng: np.random.Generator, size: tuple[int, int]
) -> Image.Image:
    """One detector crop of ``ident`` seen by ``camera``; ``size`` is (width, height)."""
    w, h = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    img = background(camera, rng, w, h)
    view = sample_view(camera, rng)
    cx, feet_y, H = _geometry(camera, ident, rng, w, h)
    _place(img, ident, view, cx, feet_y, H, camera, rng)
    if rng.random() < camera.occlusion_prob:
        kind = OCCLUDERS[int(rng.choice(len(OCCLUDERS), p=np.asarray(camera.occluder_probs)))]
        if kind == "person":
            _other_person(img, H, feet_y, camera, rng)
        else:
            draw_occluder(img, kind, rng)
    return apply_camera(img, camera, rng, size)


def render_distractor(
    camera: Camera, rng: np.random.Generator, size: tuple[int, int]
) -> Image.Image:
    """A false detection (pid ``0000``): background, a body part, or a cluttered group."""
    w, h = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    img = background(camera, rng, w, h)
    kind = rng.choice(3, p=[0.3, 0.45, 0.25])
    if kind == 0:  # background only, maybe with an object
        if rng.random() < 0.7:
            draw_occluder(img, OCCLUDERS[int(rng.choice([0, 1, 2, 4, 5]))], rng)
    elif kind == 1:  # a close-up of part of a body
        H = h * rng.uniform(1.3, 2.4)
        feet_y = h + rng.uniform(-0.1, 1.0) * (H - h)
        _place(
            img,
            sample_identity(rng),
            sample_view(camera, rng),
            w / 2 + rng.normal(0, 0.15) * w,
            feet_y,
            H,
            camera,
            rng,
        )
    else:  # several people overlapping, none centred
        for _ in range(int(rng.integers(2, 4))):
            H = h * camera.person_scale * rng.uniform(0.8, 1.1)
            _place(
                img,
                sample_identity(rng),
                VIEWS[int(rng.integers(4))],
                w * rng.uniform(0.0, 1.0),
                (h + H) / 2 + rng.normal(0, 0.05) * h,
                H,
                camera,
                rng,
            )
    return apply_camera(img, camera, rng, size)


def render_junk(camera: Camera, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A junk crop (pid ``-1``): a badly localised, tiny or heavily blurred person."""
    w, h = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    img = background(camera, rng, w, h)
    ident = sample_identity(rng)
    kind = rng.integers(3)
    if kind == 0:  # tiny person somewhere in a too-large box
        H = h * rng.uniform(0.35, 0.6)
        cx, feet_y = w * rng.uniform(0.25, 0.75), h * rng.uniform(0.5, 1.0)
    elif kind == 1:  # box shifted half off the person
        H = h * camera.person_scale
        cx, feet_y = w / 2 + rng.choice((-1, 1)) * w * rng.uniform(0.35, 0.55), (h + H) / 2
    else:  # only the upper or lower half of the person
        H = h * rng.uniform(1.6, 2.0)
        feet_y = h + (H - h) * (0.0 if rng.random() < 0.5 else 1.0)
        cx = w / 2
    _place(img, ident, sample_view(camera, rng), cx, feet_y, H, camera, rng)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(2.0, 5.0)))
    return apply_camera(img, camera, rng, size)
