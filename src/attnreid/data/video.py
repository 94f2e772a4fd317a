"""Tracklets (video re-ID): frame samplers and the torch dataset.

A sample is ``{"image": (T, 3, H, W), "pid", "camid", "index"}`` with ``index`` the tracklet's
position in the item list. Frame samplers:

* ``random`` (training): ``T`` consecutive frames from a uniformly drawn start. A tracklet
  shorter than ``T`` is looped (``short="loop"``: frames 0, 1, .., n-1, 0, 1, ..) or padded
  with its last frame (``short="pad"``).
* ``evenly`` (test): ``T`` frames evenly spaced over the whole tracklet, first and last
  included (``round(linspace(0, n - 1, T))``; a short tracklet repeats frames).
* ``first`` (test): the first ``T`` consecutive frames, looped when the tracklet is shorter
  (DuATM: "sub-sequences of 64 consecutive frames ... if the tracklet has less frames, we
  circularly sample the sequence"; the paper does not say where the sub-sequence starts: the
  first frame is the choice that needs no random draw at test time).
* ``all`` (test): every frame, in chunks of ``T`` consecutive frames (one sample per chunk, so
  memory is bounded whatever the tracklet's length); the last chunk is padded with its last
  frame and ``"mask"`` (T,) marks the real frames. Feature extraction averages the frame
  features of all chunks of a tracklet with the mask
  (:class:`attnreid.evaluation.extractor.FeatureExtractor`).

Choice: with ``same_augmentation=True`` (default) every frame of a sample gets the same random
augmentation (same flip, crop, erasing), so a training clip stays one coherent clip; this is
done by replaying the torch RNG state for each frame. torchreid draws them independently per
frame (``same_augmentation=False``).

How models consume clips: the engine trains an image model on clips the way torchreid does
(frames flattened to ``(B*T, 3, H, W)``, identities repeated ``T`` times) and averages frame
features per tracklet at test time, unless the model declares ``handles_video = True``; then
it receives the ``(B, T, 3, H, W)`` clips themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from attnreid.data.base import ReIDItem
from attnreid.data.images import SameIdentityFallback, read_checked
from attnreid.errors import ConfigError
from attnreid.utils.checks import one_of

SAMPLERS = ("random", "evenly", "first", "all")
TEST_SAMPLERS = SAMPLERS[1:]


def frames_of(item: ReIDItem) -> tuple[str, ...]:
    """The frame paths of a tracklet (a still image is a one-frame tracklet)."""
    return item.frames or (item.path,)


def random_clip(n: int, seq_len: int, short: str = "loop") -> list[int]:
    """``seq_len`` consecutive frame indices from a random start (torch RNG)."""
    if n >= seq_len:
        start = int(torch.randint(0, n - seq_len + 1, ()))
        return list(range(start, start + seq_len))
    if short == "loop":
        return [j % n for j in range(seq_len)]
    return list(range(n)) + [n - 1] * (seq_len - n)


def evenly_spaced(n: int, seq_len: int) -> list[int]:
    """``seq_len`` frame indices evenly spaced over ``0 .. n-1``, ends included."""
    return np.rint(np.linspace(0, n - 1, seq_len)).astype(int).tolist()


class VideoDataset(SameIdentityFallback, Dataset[dict[str, Any]]):
    """Tracklet items -> clips of ``seq_len`` frames (see the module docstring)."""

    def __init__(
        self,
        items: Sequence[ReIDItem],
        transform: Callable[[Any], torch.Tensor],
        *,
        seq_len: int = 4,
        sampler: str = "random",
        short: str = "loop",
        same_augmentation: bool = True,
        skip_bad: bool = False,
    ) -> None:
        if sampler != "random":  # the training sampler; the others are data.test_frames
            one_of(sampler, TEST_SAMPLERS, "data.test_frames")
        if seq_len < 1:
            raise ConfigError(f"data.seq_len must be >= 1, got {seq_len}")
        one_of(short, ("loop", "pad"), "short")
        self.items = list(items)
        self.transform = transform
        self.seq_len, self.sampler, self.short = seq_len, sampler, short
        self.same_augmentation = same_augmentation
        if sampler == "all":
            self.index = [
                (i, start)
                for i, it in enumerate(self.items)
                for start in range(0, len(frames_of(it)), seq_len)
            ]
        else:
            self.index = [(i, 0) for i in range(len(self.items))]
        self._init_fallback(skip_bad)

    def __len__(self) -> int:
        return len(self.index)

    def frame_indices(self, n: int, start: int) -> tuple[list[int], list[bool]]:
        """The frames of one sample of an ``n``-frame tracklet, and which are real."""
        t = self.seq_len
        if self.sampler == "random":
            return random_clip(n, t, self.short), [True] * t
        if self.sampler == "evenly":
            return evenly_spaced(n, t), [True] * t
        if self.sampler == "first":
            return [j % n for j in range(t)], [True] * t
        real = list(range(start, min(start + t, n)))
        return real + [real[-1]] * (t - len(real)), [True] * len(real) + [False] * (t - len(real))

    def _clip(self, i: int, start: int) -> tuple[list[Any], list[bool]]:
        paths = frames_of(self.items[i])
        start = start if start < len(paths) else 0  # a replacement tracklet may be shorter
        idx, mask = self.frame_indices(len(paths), start)
        cache: dict[int, Any] = {}
        for j in idx:
            if j not in cache:
                cache[j] = read_checked(paths[j])
        return [cache[j] for j in idx], mask

    def _transform(self, images: list[Any]) -> torch.Tensor:
        if not self.same_augmentation:
            return torch.stack([self.transform(img) for img in images])
        state = torch.get_rng_state()
        out = []
        for img in images:
            torch.set_rng_state(state)
            out.append(self.transform(img))
        return torch.stack(out)

    def __getitem__(self, k: int) -> dict[str, Any]:
        i, start = self.index[k]
        (images, mask), i, bad = self.load_or_replace(i, lambda j: self._clip(j, start))
        it = self.items[i]
        out: dict[str, Any] = {
            "image": self._transform(images),  # (T, 3, H, W)
            "pid": it.pid,
            "camid": it.camid,
            "index": i,
        }
        if self.sampler == "all":
            out["mask"] = torch.tensor(mask)  # (T,) bool: real frames
        if self.skip_bad:
            out["replaced"] = bad
        return out
