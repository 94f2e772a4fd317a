"""Drawing one pedestrian on a transparent layer, from the front, the back or the side.

The person is built from rounded limbs, polygons and ellipses in the order a viewer would see
them (far limbs first, then legs, torso, near arm, head). What is visible depends on the view:
the chest print only from the front; a backpack's body from the back, its straps from the front
and its profile from the side; the face from the front, the back of the hair from behind; a
two-tone left/right shirt shows one colour from each side. The walking pose (leg stride, arm
swing, knee bend) comes from a :class:`Pose`.

Coordinates are canvas pixels (the canvas is supersampled, see :mod:`.render`); every length is
a fraction of the person's height ``H`` (top of head to sole).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from .identity import RGB, Identity
from .parts import Fill, Painter, Pattern, Shape, draw_head, shade, upper_fill


@dataclass(frozen=True)
class Pose:
    """Per-image body pose: viewpoint and walking phase."""

    view: str  # front | back | left | right
    phase: float  # walking phase, radians
    stride: float  # leg swing amplitude, radians
    arm_swing: float  # arm swing amplitude, radians


def sample_pose(view: str, rng: np.random.Generator) -> Pose:
    """A random phase of the walking cycle with random stride and arm swing."""
    return Pose(
        view,
        float(rng.uniform(0, 2 * math.pi)),
        float(rng.uniform(0.15, 0.42)),
        float(rng.uniform(0.1, 0.45)),
    )


def draw_person(
    size: tuple[int, int],
    ident: Identity,
    pose: Pose,
    cx: float,
    feet_y: float,
    H: float,
    rng: np.random.Generator,
    light: float = 0.0,
) -> Image.Image:
    """Return an RGBA layer of ``size`` with the person drawn; transparent elsewhere.

    ``cx`` is the body axis, ``feet_y`` the ground line, ``H`` the height in pixels and
    ``light`` in [-1, 1] the side the light comes from. The flat colours are then shaded:
    a rounded-body term, the light direction, darker legs, and smooth noise for cloth folds
    (drawn from ``rng``).
    """
    view = pose.view
    mirror = view == "left"
    if mirror:  # draw facing right, then mirror the layer
        cx = size[0] - 1 - cx
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    if view in ("left", "right"):
        _draw_side(Painter(layer), ident, pose, cx, feet_y, H, near="right" if mirror else "left")
    else:
        _draw_frontal(Painter(layer), ident, pose, cx, feet_y, H)
    if mirror:
        layer = ImageOps.mirror(layer)
        cx = size[0] - 1 - cx
    bbox = layer.getbbox()
    if bbox is None:
        return layer
    x0, y0, x1, y1 = bbox
    arr = np.asarray(layer.crop(bbox)).astype(np.float32)
    xs = np.clip((np.arange(x0, x1, dtype=np.float32) - cx) / (0.16 * H), -1.5, 1.5)
    ys = np.clip((np.arange(y0, y1, dtype=np.float32) - (feet_y - H)) / H, 0.0, 1.0)
    shade = (1.0 + 0.16 * light * np.clip(xs, -1.0, 1.0) - 0.08 * xs * xs)[None, :]
    shade = shade - 0.12 * ys[:, None]
    cell = max(2, int(0.035 * H))  # folds: smooth multiplicative noise
    folds = rng.normal(0.0, 0.07, size=((y1 - y0) // cell + 2, (x1 - x0) // cell + 2))
    folds_img = Image.fromarray(folds.astype(np.float32), "F").resize(
        ((folds.shape[1] - 1) * cell, (folds.shape[0] - 1) * cell), Image.Resampling.BILINEAR
    )
    shade = shade + np.asarray(folds_img)[: y1 - y0, : x1 - x0]
    arr[..., :3] *= shade[..., None]
    layer.paste(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGBA"), (x0, y0))
    return layer


def _legs_lower(
    pt: Painter,
    ident: Identity,
    legs: list[tuple],
    hip_y: float,
    hw: float,
    H: float,
    cx: float,
    dark: list[float],
) -> None:
    """Legs (each ``(hip, knee, ankle, foot_dir)``), lower garment and shoes."""
    bare = ident.leg_cover or ident.skin
    r_top, r_knee, r_ank = 0.05 * H, 0.036 * H, 0.026 * H
    for (hip, knee, ankle, fdir), f in zip(legs, dark):
        pt.paint(
            [("limb", hip, knee, r_top, r_knee), ("limb", knee, ankle, r_knee, r_ank)],
            shade(bare, f),
        )
        if ident.lower_type == "trousers":
            pt.paint(
                [
                    ("limb", hip, knee, r_top * 1.05, r_knee * 1.15),
                    ("limb", knee, ankle, r_knee * 1.15, r_ank * 1.2),
                ],
                shade(ident.lower_color, f),
            )
        elif ident.lower_type == "shorts":
            mid = (hip[0] + 0.75 * (knee[0] - hip[0]), hip[1] + 0.75 * (knee[1] - hip[1]))
            pt.paint([("limb", hip, mid, r_top * 1.1, r_knee * 1.35)], shade(ident.lower_color, f))
        sx, sy = ankle
        fl = 0.075 * H
        if fdir == 0:
            box = (sx - 0.035 * H, sy - 0.01 * H, sx + 0.035 * H, sy + 0.03 * H)
        else:
            x0, x1 = sorted((sx - fdir * 0.025 * H, sx + fdir * fl))
            box = (x0, sy - 0.012 * H, x1, sy + 0.03 * H)
        pt.paint([("ellipse", box)], shade(ident.shoe_color, f))
    if ident.lower_type == "skirt":
        hem = hip_y + (0.36 + 0.1 * ident.pattern_variant) * (legs[0][2][1] - hip_y)
        flare = hw * 0.7 + abs(legs[0][1][0] - legs[1][1][0]) * 0.3
    else:  # the waistband
        hem, flare = hip_y + 0.03 * H, hw * 0.5
    pt.paint([_trapezoid(cx, hip_y - 0.05 * H, hw * 0.5, hem, flare)], ident.lower_color)


def _arm(
    pt: Painter,
    ident: Identity,
    shoulder: tuple,
    elbow: tuple,
    wrist: tuple,
    H: float,
    fill: Fill,
    f: float = 1.0,
) -> None:
    ra, rw = 0.03 * H, 0.022 * H
    pt.paint(
        [("limb", shoulder, elbow, ra, ra * 0.9), ("limb", elbow, wrist, ra * 0.9, rw)],
        shade(ident.skin, f),
    )
    if ident.long_sleeves:
        sleeve = [("limb", shoulder, elbow, ra * 1.1, ra), ("limb", elbow, wrist, ra, rw * 1.1)]
    else:
        mid = (
            shoulder[0] + 0.55 * (elbow[0] - shoulder[0]),
            shoulder[1] + 0.55 * (elbow[1] - shoulder[1]),
        )
        sleeve = [("limb", shoulder, mid, ra * 1.15, ra * 1.1)]
    pt.paint(sleeve, fill if isinstance(fill, Pattern) else shade(fill, f))
    r = 0.024 * H
    pt.paint(
        [("ellipse", (wrist[0] - r, wrist[1] - r * 0.6, wrist[0] + r, wrist[1] + r * 1.4))],
        shade(ident.skin, f),
    )


def _trapezoid(x: float, y0: float, half0: float, y1: float, half1: float) -> Shape:
    """The quadrilateral centred on ``x``: half-width ``half0`` at ``y0``, ``half1`` at ``y1``."""
    return ("poly", [(x - half0, y0), (x + half0, y0), (x + half1, y1), (x - half1, y1)])


def _bag_box(x: float, y: float, w: float, h: float) -> Shape:
    return _trapezoid(x, y, w / 2, y + h, w / 2)


def _carried_bag(
    pt: Painter, wrist: tuple, x: float, w: float, h: float, H: float, col: RGB
) -> None:
    """A bag hanging from ``wrist`` on a short handle, centred on ``x``."""
    pt.paint([("line", [wrist, (wrist[0], wrist[1] + 0.04 * H)], 0.006 * H)], shade(col, 0.6))
    pt.paint([_bag_box(x, wrist[1] + 0.035 * H, w, h)], col)


def _draw_frontal(
    pt: Painter, ident: Identity, pose: Pose, cx: float, feet_y: float, H: float
) -> None:
    front = pose.view == "front"
    top = feet_y - H
    hh = ident.head_size * H
    sh_y = top + hh + 0.035 * H
    hip_y = feet_y - ident.leg_ratio * H
    sw, hw = ident.shoulder_width * H, ident.hip_width * H
    s = math.sin(pose.phase)
    # image direction of the person's right side: left of the image when seen from the front
    right = -1 if front else 1
    acc, acc_col = ident.accessory, ident.accessory_color
    img_side = right * ident.accessory_side  # image direction of the accessory side
    # hem of the shirt
    hem_y = hip_y + 0.03 * H
    fill = upper_fill(ident, pose.view, pt.layer.size, cx, sh_y, sh_y + 0.12 * H, H)

    if acc == "backpack" and front:  # the pack's top peeks over the shoulders
        pt.paint([_bag_box(cx, sh_y - 0.02 * H, sw * 0.8, 0.25 * H)], shade(acc_col, 0.8))

    legs = []
    for side in (-1, 1):  # image-left, image-right
        lift = 0.035 * H * max(0.0, s * side * right)
        hip = (cx + side * hw * 0.26, hip_y)
        ankle = (cx + side * (hw * 0.28 + 0.01 * H), feet_y - 0.03 * H - lift)
        knee = ((hip[0] + ankle[0]) / 2, (hip[1] + ankle[1]) / 2 - 0.3 * lift)
        legs.append((hip, knee, ankle, 0))
    _legs_lower(pt, ident, legs, hip_y, hw, H, cx, [1.0, 1.0])

    waist = max(hw, sw * 0.8) * 0.47
    torso = [
        (
            "poly",
            [
                (cx - sw * 0.4, sh_y),
                (cx + sw * 0.4, sh_y),
                (cx + sw * 0.5, sh_y + 0.035 * H),
                (cx + waist, hem_y - 0.1 * H),
                (cx + hw * 0.5, hem_y),
                (cx - hw * 0.5, hem_y),
                (cx - waist, hem_y - 0.1 * H),
                (cx - sw * 0.5, sh_y + 0.035 * H),
            ],
        )
    ]
    pt.paint(torso, fill)
    if ident.upper_pattern == "logo" and front:
        lw = sw * 0.32
        ly = sh_y + 0.07 * H
        shape = (
            ("ellipse", (cx - lw / 2, ly, cx + lw / 2, ly + lw))
            if ident.pattern_variant
            else _bag_box(cx, ly, lw * 1.2, lw * 0.8)
        )
        pt.paint([shape], ident.upper_second)
    if acc == "backpack":
        if front:
            for side in (-1, 1):
                x = cx + side * sw * 0.28
                pt.paint(
                    [("line", [(x, sh_y), (x + side * 0.01 * H, sh_y + 0.2 * H)], 0.025 * H)],
                    acc_col,
                )
        else:
            pt.paint([_bag_box(cx, sh_y + 0.02 * H, sw * 0.72, 0.27 * H)], acc_col)
            pt.paint([_bag_box(cx, sh_y + 0.17 * H, sw * 0.5, 0.09 * H)], shade(acc_col, 0.75))
            pt.paint(
                [
                    (
                        "line",
                        [(cx - sw * 0.15, sh_y + 0.05 * H), (cx + sw * 0.15, sh_y + 0.05 * H)],
                        0.008 * H,
                    )
                ],
                shade(acc_col, 0.6),
            )
    if acc == "shoulder_bag":
        x0, x1 = cx - img_side * sw * 0.35, cx + img_side * hw * 0.45
        pt.paint(
            [("line", [(x0, sh_y + 0.005 * H), (x1, hip_y - 0.02 * H)], 0.014 * H)],
            shade(acc_col, 0.85),
        )

    for side in (-1, 1):
        swing = pose.arm_swing * s * side * right  # opposite to the leg on that side
        shoulder = (cx + side * (sw * 0.5 - 0.025 * H), sh_y + 0.03 * H)
        out = max(sw, hw) * 0.5 + 0.02 * H
        elbow = (cx + side * (out + 0.005 * H), sh_y + 0.17 * H - 0.02 * H * abs(swing))
        wrist = (cx + side * (out + 0.01 * H), hip_y + 0.05 * H - 0.08 * H * abs(swing))
        _arm(pt, ident, shoulder, elbow, wrist, H, fill, 0.93)
        if acc == "carried_bag" and side == img_side:
            _carried_bag(pt, wrist, wrist[0] + side * 0.01 * H, 0.1 * H, 0.13 * H, H, acc_col)
    if acc == "shoulder_bag":
        pt.paint(
            [_bag_box(cx + img_side * (hw * 0.5 + 0.02 * H), hip_y - 0.04 * H, 0.12 * H, 0.1 * H)],
            acc_col,
        )
    draw_head(pt, ident, pose.view, cx, top, H)
    if ident.hair_style == "long" and not front:  # long hair over the upper back
        hw_ = ident.head_size * H * 0.8
        pt.paint(
            [_trapezoid(cx, top + hh * 0.6, 0.55 * hw_, sh_y + 0.08 * H, 0.6 * hw_)],
            ident.hair_color,
        )


def _draw_side(
    pt: Painter, ident: Identity, pose: Pose, cx: float, feet_y: float, H: float, near: str
) -> None:
    """Profile facing image-right; ``near`` is the side of the body facing the camera."""
    top = feet_y - H
    hh = ident.head_size * H
    sh_y = top + hh + 0.035 * H
    leg_len = ident.leg_ratio * H
    depth = max(0.12 * H, ident.shoulder_width * H * 0.6)
    s = math.sin(pose.phase)
    acc, acc_col = ident.accessory, ident.accessory_color
    near_sign = 1 if near == "right" else -1
    acc_near = ident.accessory_side == near_sign
    fill = upper_fill(ident, pose.view, pt.layer.size, cx, sh_y, sh_y + 0.12 * H, H)
    far_fill: Fill = fill
    if ident.upper_pattern == "twotone" and isinstance(fill, tuple):
        far_fill = ident.upper_color if fill == ident.upper_second else ident.upper_second

    # legs: thigh/shin angles (positive = forward), the rear leg bends its knee
    legs, low = [], 0.0
    for sign in (-1, 1):  # far leg, near leg
        a = pose.stride * s * sign
        shin = a * 0.6 if a > 0 else a - 0.5 * abs(a)
        low = max(low, 0.52 * math.cos(a) + 0.48 * math.cos(shin))
        legs.append((a, shin))
    hip_y = feet_y - 0.03 * H - leg_len * low + 0.03 * H
    joints = []
    for a, shin in legs:
        hip = (cx, hip_y)
        knee = (cx + math.sin(a) * 0.52 * leg_len, hip_y + math.cos(a) * 0.52 * leg_len)
        ankle = (
            knee[0] + math.sin(shin) * 0.48 * leg_len,
            knee[1] + math.cos(shin) * 0.48 * leg_len - 0.03 * H,
        )
        joints.append((hip, knee, ankle, 1))

    shoulder = (cx, sh_y + 0.03 * H)

    def arm_pts(sign: int) -> tuple:
        a = -pose.arm_swing * s * sign
        elbow = (shoulder[0] + math.sin(a) * 0.17 * H, shoulder[1] + math.cos(a) * 0.17 * H)
        fa = a + 0.15 + 0.4 * max(0.0, a)
        wrist = (elbow[0] + math.sin(fa) * 0.16 * H, elbow[1] + math.cos(fa) * 0.16 * H)
        return elbow, wrist

    far_elbow, far_wrist = arm_pts(-1)
    _arm(pt, ident, shoulder, far_elbow, far_wrist, H, far_fill, 0.75)
    if acc == "carried_bag" and not acc_near:
        pt.paint(
            [_bag_box(far_wrist[0], far_wrist[1] + 0.02 * H, 0.12 * H, 0.13 * H)],
            shade(acc_col, 0.75),
        )
    if acc == "shoulder_bag" and not acc_near:
        pt.paint(
            [_bag_box(cx + 0.02 * H, hip_y - 0.06 * H, 0.13 * H, 0.1 * H)], shade(acc_col, 0.75)
        )
    _legs_lower(pt, ident, joints, hip_y, depth, H, cx, [0.78, 1.0])

    back, front_x = cx - depth * 0.55, cx + depth * 0.45
    hem_y = hip_y + 0.03 * H
    if acc == "backpack":
        pt.paint(
            [
                (
                    "poly",
                    [
                        (back + 0.01 * H, sh_y + 0.01 * H),
                        (back - 0.085 * H, sh_y + 0.03 * H),
                        (back - 0.095 * H, sh_y + 0.26 * H),
                        (back + 0.01 * H, sh_y + 0.28 * H),
                    ],
                )
            ],
            acc_col,
        )
    torso = [
        (
            "poly",
            [
                (back + 0.01 * H, sh_y),
                (front_x - 0.01 * H, sh_y),
                (front_x + 0.01 * H, sh_y + 0.1 * H),
                (front_x - 0.01 * H, hem_y),
                (back + 0.01 * H, hem_y),
                (back - 0.005 * H, sh_y + 0.12 * H),
            ],
        )
    ]
    pt.paint(torso, fill)
    if acc == "backpack":
        pt.paint(
            [("line", [(cx - 0.01 * H, sh_y), (cx + 0.02 * H, sh_y + 0.16 * H)], 0.022 * H)],
            shade(acc_col, 0.9),
        )
    if acc == "shoulder_bag":
        pt.paint(
            [
                (
                    "line",
                    [
                        (cx + 0.01 * H, sh_y),
                        (cx - 0.015 * H if acc_near else back, hip_y - 0.04 * H),
                    ],
                    0.014 * H,
                )
            ],
            shade(acc_col, 0.85),
        )
    if acc == "shoulder_bag" and acc_near:
        pt.paint([_bag_box(cx - 0.01 * H, hip_y - 0.07 * H, 0.13 * H, 0.1 * H)], acc_col)
    elbow, wrist = arm_pts(1)
    _arm(pt, ident, shoulder, elbow, wrist, H, fill, 1.0)
    if acc == "carried_bag" and acc_near:
        _carried_bag(pt, wrist, wrist[0], 0.13 * H, 0.12 * H, H, acc_col)
    draw_head(pt, ident, pose.view, cx + 0.01 * H, top, H, facing=1)
