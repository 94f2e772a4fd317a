"""Camera models: everything about an image that depends on the camera, not the person.

A :class:`Camera` is sampled once per camera index from the dataset seed. It fixes

* the **viewpoint** distribution (a dominant view - front, back, left or right - plus mixing),
* the **geometry** of the detector box (person scale, systematic offset, how often the head or
  the feet are cut off),
* the **photometry** (exposure gain, gamma, contrast, saturation, a per-channel colour cast
  strong enough to change how a shirt colour reads, lifted black level), the optics and sensor
  (blur, noise, JPEG quality of the camera's own compression),
* the **scene** behind the person (see :mod:`.scene`) and the kinds and rate of occluders.

These are the nuisance factors: they are shared by every person a camera sees, so raw pixel
statistics cluster by camera rather than by identity.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

VIEWS = ("front", "back", "left", "right")
SCENE_KINDS = ("street", "corridor", "plaza", "shopfront", "park", "station")
OCCLUDERS = ("pole", "bench", "car", "person", "bin", "sign")


@dataclass(frozen=True)
class Camera:
    """One camera's fixed properties (see the module docstring)."""

    index: int
    view_probs: tuple[float, float, float, float]
    person_scale: float
    offset_x: float
    offset_y: float
    jitter: float
    cut_prob: float
    gain: float
    gamma: float
    contrast: float
    saturation: float
    cast: tuple[float, float, float]
    black_level: float
    blur: float
    noise: float
    jpeg_quality: int
    light_side: float
    scene_kind: str
    horizon: float
    occlusion_prob: float
    occluder_probs: tuple[float, ...]
    scene_entropy: tuple[int, ...]


def camera_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed sequence of camera ``index`` (1-based) for dataset ``seed``."""
    return np.random.SeedSequence([seed, 2, index])


def sample_camera(seed: int, index: int) -> Camera:
    """Sample camera ``index`` (1-based). Depends only on ``seed`` and ``index``."""
    # Dominant views and scene kinds are dealt from per-seed permutations so that neighbouring
    # cameras differ (a random draw per camera could give six frontal corridor cameras).
    deal = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    view_order = deal.permutation(len(VIEWS))
    scene_order = deal.permutation(len(SCENE_KINDS))
    dominant = int(view_order[(index - 1) % len(VIEWS)])
    scene_kind = SCENE_KINDS[int(scene_order[(index - 1) % len(SCENE_KINDS)])]

    ss = camera_seed(seed, index)
    rng = np.random.default_rng(ss)
    probs = rng.dirichlet(np.full(len(VIEWS), 1.0)) * rng.uniform(0.15, 0.35)
    probs[dominant] += 1.0 - probs.sum()

    temperature = rng.uniform(-1.0, 1.0)
    tint = rng.uniform(-1.0, 1.0)
    cast = np.array([1.0 + 0.20 * temperature, 1.0 + 0.09 * tint, 1.0 - 0.22 * temperature])
    cast *= np.exp(rng.normal(0.0, 0.05, size=3))

    occluder_probs = rng.dirichlet(np.full(len(OCCLUDERS), 0.7))
    return Camera(
        index=index,
        view_probs=tuple(float(p) for p in probs),  # type: ignore[arg-type]
        person_scale=float(rng.uniform(0.78, 0.94)),
        offset_x=float(rng.normal(0.0, 0.04)),
        offset_y=float(rng.normal(0.0, 0.03)),
        jitter=float(rng.uniform(0.015, 0.05)),
        cut_prob=float(rng.uniform(0.03, 0.2)),
        gain=float(np.exp(rng.uniform(-0.35, 0.3))),
        gamma=float(np.exp(rng.uniform(-0.3, 0.3))),
        contrast=float(rng.uniform(0.65, 1.15)),
        saturation=float(rng.uniform(0.55, 1.25)),
        cast=tuple(float(c) for c in cast),  # type: ignore[arg-type]
        black_level=float(rng.uniform(0.0, 28.0)),
        blur=float(rng.uniform(0.0, 1.0) ** 1.5 * 1.1),
        noise=float(rng.uniform(1.5, 8.0)),
        jpeg_quality=int(rng.integers(40, 93)),
        light_side=float(rng.uniform(-1.0, 1.0)),
        scene_kind=scene_kind,
        horizon=float(rng.uniform(0.5, 0.78)),
        occlusion_prob=float(rng.uniform(0.08, 0.4)),
        occluder_probs=tuple(float(p) for p in occluder_probs),
        scene_entropy=(int(seed), 4, int(index)),
    )


def sample_view(camera: Camera, rng: np.random.Generator) -> str:
    """The viewpoint of one image: usually the camera's dominant one."""
    return VIEWS[int(rng.choice(len(VIEWS), p=np.asarray(camera.view_probs)))]


def apply_camera(
    image: Image.Image, camera: Camera, rng: np.random.Generator, size: tuple[int, int]
) -> Image.Image:
    """Turn a supersampled, ideal rendering into what ``camera`` records at ``size`` (w, h).

    Downsamples with LANCZOS (anti-aliasing), then applies per-image jittered exposure, colour
    cast, gamma, contrast, saturation and black level, optical blur, sensor noise and a JPEG
    round trip at the camera's own quality.
    """
    small = image.resize(size, Image.Resampling.LANCZOS)
    blur = camera.blur * float(np.exp(rng.normal(0.0, 0.2)))
    if blur > 0.15:
        small = small.filter(ImageFilter.GaussianBlur(blur))

    x = np.asarray(small, dtype=np.float32) / 255.0
    gain = camera.gain * float(np.exp(rng.normal(0.0, 0.1)))
    cast = np.asarray(camera.cast, dtype=np.float32) * np.exp(
        rng.normal(0.0, 0.025, size=3)
    ).astype(np.float32)
    x = np.clip(x * (gain * cast), 0.0, 1.0) ** np.float32(camera.gamma)
    gray = x.mean(axis=2, keepdims=True)
    x = gray + (x - gray) * np.float32(camera.saturation)
    x = 0.5 + (x - 0.5) * np.float32(camera.contrast * float(np.exp(rng.normal(0.0, 0.05))))
    black = camera.black_level / 255.0
    x = black + x * (1.0 - black)
    noise = rng.normal(0.0, camera.noise / 255.0, size=x.shape).astype(np.float32)
    x = np.clip((x + noise) * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)

    buf = io.BytesIO()
    Image.fromarray(x, "RGB").save(buf, format="JPEG", quality=camera.jpeg_quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return decoded.convert("RGB")
