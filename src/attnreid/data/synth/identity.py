"""Identity attributes of a synthetic pedestrian, sampled once per person id.

An :class:`Identity` is everything about a person that does not change between cameras: body
proportions, skin and hair, clothing (colours, pattern, sleeves, lower garment, shoes) and the
accessory they carry. These are the cues a re-ID model has to learn; the camera models in
:mod:`.camera` are what hides them.

The garment palettes deliberately contain clusters of close colours (navy / dark blue / indigo,
red / crimson / brick, several greys and beiges), and every identity perturbs its palette colour
a little, so telling two people apart often needs the pattern, accessory, hair or proportions
as well as the main colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]

#: Upper-garment palette. Close clusters make colour alone a fine-grained cue.
UPPER_PALETTE: tuple[RGB, ...] = (
    # reds / pinks
    (186, 32, 38), (156, 28, 44), (168, 58, 46), (112, 26, 38), (222, 146, 164), (200, 92, 130),
    # blues
    (30, 40, 88), (42, 58, 124), (60, 52, 120), (52, 86, 170), (104, 152, 206), (150, 184, 224),
    # greens / teal
    (32, 82, 48), (98, 108, 52), (52, 132, 72), (34, 118, 120), (140, 170, 110),
    # yellows / orange
    (206, 162, 44), (230, 204, 70), (222, 122, 42),
    # purples
    (92, 52, 130), (160, 140, 200),
    # neutrals (the most common, as on a real street)
    (236, 236, 230), (224, 214, 190), (182, 182, 180), (124, 124, 126), (72, 72, 76), (28, 28, 32),
    (40, 36, 34), (200, 180, 140), (112, 76, 46), (170, 130, 92), (160, 150, 112),
)
#: Relative frequencies of :data:`UPPER_PALETTE` (neutrals more likely).
UPPER_WEIGHTS = np.array([1.0] * 22 + [2.0, 1.2, 1.6, 1.6, 1.8, 2.4, 1.4, 1.2, 1.0, 1.0, 1.0])

#: Lower-garment palette: jeans, dark trousers, chinos, and some brighter skirt colours.
LOWER_PALETTE: tuple[RGB, ...] = (
    (48, 66, 104), (68, 92, 136), (96, 122, 160), (36, 44, 70), (26, 26, 30), (62, 62, 66),
    (118, 118, 120), (170, 156, 118), (200, 184, 150), (102, 74, 50), (84, 92, 52), (234, 232, 226),
    (160, 40, 48), (200, 130, 150), (80, 50, 110),
)
LOWER_WEIGHTS = np.array(
    [3.0, 2.5, 1.5, 2.0, 3.0, 2.0, 1.2, 1.5, 1.0, 1.0, 0.8, 0.6, 0.5, 0.5, 0.4]
)

SHOE_PALETTE: tuple[RGB, ...] = (
    (20, 20, 22), (240, 240, 238), (90, 60, 40), (120, 120, 124), (40, 50, 90), (180, 40, 40),
    (200, 180, 140),
)
SHOE_WEIGHTS = np.array([4.0, 3.0, 1.5, 1.2, 0.8, 0.4, 0.6])

HAIR_PALETTE: tuple[RGB, ...] = (
    (18, 16, 16), (46, 32, 24), (84, 56, 36), (132, 96, 58), (196, 160, 100), (150, 150, 148),
    (120, 52, 30),
)
HAIR_WEIGHTS = np.array([4.0, 3.0, 2.0, 1.0, 0.8, 0.6, 0.4])

BAG_PALETTE: tuple[RGB, ...] = (
    (24, 24, 28), (70, 70, 74), (36, 46, 92), (150, 34, 40), (110, 74, 44), (50, 96, 60),
    (210, 170, 60), (200, 200, 196), (120, 70, 140),
)

#: Skin tones from light to dark; an identity interpolates between neighbours.
SKIN_TONES: tuple[RGB, ...] = (
    (244, 212, 188), (228, 188, 160), (208, 160, 124), (176, 124, 90), (130, 88, 62), (88, 58, 42),
)

UPPER_PATTERNS = ("solid", "hstripes", "vstripes", "checks", "twotone", "logo")
UPPER_PATTERN_WEIGHTS = np.array([0.40, 0.13, 0.08, 0.11, 0.12, 0.16])
HAIR_STYLES = ("short", "long", "bald", "cap", "hat")
ACCESSORIES = ("none", "backpack", "shoulder_bag", "carried_bag")
ACCESSORY_WEIGHTS = np.array([0.38, 0.27, 0.20, 0.15])
LOWER_TYPES = ("trousers", "shorts", "skirt")


@dataclass(frozen=True)
class Identity:
    """What one person looks like, independent of the camera.

    Lengths are fractions of the person's height (top of head to sole) except ``stature``,
    which scales the whole person relative to the crop.
    """

    stature: float
    shoulder_width: float
    hip_width: float
    leg_ratio: float
    head_size: float
    skin: RGB
    hair_color: RGB
    hair_style: str
    headwear_color: RGB
    upper_color: RGB
    upper_pattern: str
    upper_second: RGB
    pattern_scale: float
    pattern_variant: int
    long_sleeves: bool
    lower_type: str
    lower_color: RGB
    leg_cover: RGB | None
    shoe_color: RGB
    accessory: str
    accessory_color: RGB
    accessory_side: int


def _pick(rng: np.random.Generator, palette: tuple[RGB, ...], weights: np.ndarray | None) -> RGB:
    p = None if weights is None else weights / weights.sum()
    return palette[int(rng.choice(len(palette), p=p))]


def _jitter(rng: np.random.Generator, color: RGB, amount: float) -> RGB:
    """Perturb a palette colour a little so that identities sharing it still differ slightly."""
    c = np.asarray(color, dtype=np.float64) * (1.0 + rng.normal(0.0, amount * 0.5))
    c = c + rng.normal(0.0, amount * 60.0, size=3)
    return tuple(int(v) for v in np.clip(np.round(c), 0, 255))  # type: ignore[return-value]


def _distinct(rng: np.random.Generator, base: RGB, palette: tuple[RGB, ...]) -> RGB:
    """A palette colour clearly different from ``base`` (for patterns and prints)."""
    far = [c for c in palette if sum(abs(a - b) for a, b in zip(c, base)) > 150]
    if not far:
        return (255 - base[0], 255 - base[1], 255 - base[2])
    return far[int(rng.integers(len(far)))]


def _skin(rng: np.random.Generator) -> RGB:
    t = rng.uniform(0.0, len(SKIN_TONES) - 1.0)
    i = min(int(t), len(SKIN_TONES) - 2)
    f = t - i
    a, b = np.asarray(SKIN_TONES[i], float), np.asarray(SKIN_TONES[i + 1], float)
    return tuple(int(v) for v in np.round(a * (1 - f) + b * f))  # type: ignore[return-value]


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one identity. Uses only ``rng`` (one generator per person id)."""
    feminine = rng.random() < 0.45
    stature = float(rng.uniform(0.88, 1.0))
    shoulder = float(rng.uniform(0.20, 0.25) if feminine else rng.uniform(0.23, 0.29))
    hip = float(rng.uniform(0.18, 0.23) if feminine else rng.uniform(0.17, 0.21))
    leg_ratio = float(rng.uniform(0.45, 0.53))
    head = float(rng.uniform(0.118, 0.145))

    if feminine:
        style_p = np.array([0.22, 0.58, 0.0, 0.12, 0.08])
    else:
        style_p = np.array([0.62, 0.06, 0.10, 0.16, 0.06])
    hair_style = HAIR_STYLES[int(rng.choice(len(HAIR_STYLES), p=style_p))]
    hair_color = _jitter(rng, _pick(rng, HAIR_PALETTE, HAIR_WEIGHTS), 0.04)
    headwear = _jitter(rng, _pick(rng, BAG_PALETTE + UPPER_PALETTE[:12], None), 0.04)

    upper = _jitter(rng, _pick(rng, UPPER_PALETTE, UPPER_WEIGHTS), 0.05)
    pattern = UPPER_PATTERNS[int(rng.choice(len(UPPER_PATTERNS), p=UPPER_PATTERN_WEIGHTS))]
    second = _jitter(rng, _distinct(rng, upper, UPPER_PALETTE), 0.05)

    lower_p = np.array([0.55, 0.20, 0.25]) if feminine else np.array([0.80, 0.20, 0.0])
    lower_type = LOWER_TYPES[int(rng.choice(3, p=lower_p))]
    lower = _jitter(rng, _pick(rng, LOWER_PALETTE, LOWER_WEIGHTS), 0.05)
    skin = _skin(rng)
    leg_cover: RGB | None = None
    if lower_type == "skirt" and rng.random() < 0.5:  # dark tights under a skirt
        leg_cover = _jitter(rng, (30, 28, 32), 0.03)

    accessory = ACCESSORIES[int(rng.choice(len(ACCESSORIES), p=ACCESSORY_WEIGHTS))]
    return Identity(
        stature=stature,
        shoulder_width=shoulder,
        hip_width=hip,
        leg_ratio=leg_ratio,
        head_size=head,
        skin=skin,
        hair_color=hair_color,
        hair_style=hair_style,
        headwear_color=headwear,
        upper_color=upper,
        upper_pattern=pattern,
        upper_second=second,
        pattern_scale=float(rng.uniform(0.03, 0.06)),
        pattern_variant=int(rng.integers(2)),
        long_sleeves=bool(rng.random() < 0.55),
        lower_type=lower_type,
        lower_color=lower,
        leg_cover=leg_cover,
        shoe_color=_jitter(rng, _pick(rng, SHOE_PALETTE, SHOE_WEIGHTS), 0.03),
        accessory=accessory,
        accessory_color=_jitter(rng, _pick(rng, BAG_PALETTE, None), 0.05),
        accessory_side=int(rng.choice((-1, 1))),
    )
