"""The embedded default dataset: a procedural, multi-camera pedestrian re-ID dataset.

>>> from attnreid.data.synth import generate_synthetic_reid, SynthConfig
>>> summary = generate_synthetic_reid("data/synth", SynthConfig(seed=0))   # doctest: +SKIP
>>> summary["query"]["images"], summary["gallery"]["identities"]           # doctest: +SKIP

It writes ``bounding_box_train/``, ``query/`` and ``bounding_box_test/`` with Market-1501 file
names (``0002_c1s1_000451_03.jpg``; distractors ``0000_*``, junk ``-1_*``), so it is read by
the same loader as the real benchmark, plus ``synth.json`` (written last; its presence marks a
complete dataset and lets a second call reuse it).

Design
------
* :mod:`.identity` samples, once per person id, what survives a camera change: proportions,
  skin, hair style and colour, the upper garment's colour (from a palette of close colours),
  pattern (stripes, checks, two-tone, chest print) and sleeves, the lower garment's type and
  colour, shoes and an accessory (backpack, shoulder bag, carried bag).
* :mod:`.camera` samples, once per camera, what does not: dominant viewpoint, box scale and
  misalignment, exposure, gamma, contrast, saturation, a colour cast, black level, blur,
  noise, JPEG quality, the occluder rate and the scene; :mod:`.scene` draws the scenes.
* :mod:`.person` draws a person from the front, back or side (what is visible depends on the
  view), :mod:`.render` composes an image at 2x and applies the camera, and
  :mod:`.generator` plans the layout and writes the files deterministically.

What makes it hard
------------------
Everything a camera contributes is shared by all people it sees and covers most of the crop:
its background scene, its colour cast and tone curve, its viewpoint (a backpack is a large
coloured block from behind, two straps from the front, a profile from the side; a chest print
only exists from the front), its blur, noise and compression, its typical occluders and box
errors. Raw pixels and colour histograms therefore match images of *other* people in the same
camera better than the same person in another camera. The identity is still recoverable -
the garment colours up to the camera's cast, the patterns, hair, accessory and body shape are
consistent - but a model has to learn invariance to the camera to use it, and the close
palette colours make colour alone insufficient.
"""

from __future__ import annotations

from .generator import SynthConfig, generate_synthetic_reid

__all__ = ["SynthConfig", "generate_synthetic_reid"]
