"""Reading images robustly (and, for datasets, replacing an unreadable one).

Images are decoded by content, not by extension (a real-world quirk: some datasets ship JPEG
data in ``.png`` files), converted to RGB (grayscale, palette and RGBA images included), and
fully decoded on open so that a truncated file fails here, with its name, rather than deep
inside a transform.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, TypeVar

from PIL import Image, UnidentifiedImageError

from attnreid.data.base import ReIDItem
from attnreid.errors import DatasetError

T = TypeVar("T")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as RGB: grayscale and palette images converted, alpha composited on black."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (0, 0, 0))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def read_image(
    path: str | os.PathLike[str] | BinaryIO,
    *,
    max_pixels: int | None = None,
    name: str = "",
    formats: Sequence[str] | None = None,
) -> Image.Image:
    """Open ``path`` (a file name, or a binary file object named ``name`` in messages) as an
    RGB image; raise :class:`DatasetError` if it is unreadable, of none of ``formats`` (PIL's
    names: only their decoders are tried), or larger than ``max_pixels`` (checked from the
    header, before anything is decoded: a decompression bomb is refused)."""
    where = name or path
    try:
        with Image.open(path, formats=formats) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise DatasetError(
                    f"image {where} has {img.width}x{img.height} pixels, more than the "
                    f"{max_pixels:,} allowed"
                )
            img.load()
            return to_rgb(img.copy() if img.mode == "RGB" else img)
    except FileNotFoundError:
        raise DatasetError(f"image not found: {where}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        if isinstance(exc, Image.DecompressionBombError):
            raise DatasetError(
                f"image {where} has more than {Image.MAX_IMAGE_PIXELS * 2:,} pixels: refused as "
                "a possible decompression bomb"
            ) from None
        raise DatasetError(f"not an image (cannot identify its format): {where}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"unreadable or truncated image {where}: {exc}") from None


def read_checked(path: str) -> Any:
    """:func:`read_image`, with the path attached to the error (``exc.bad_path``)."""
    try:
        return read_image(path)
    except DatasetError as exc:
        exc.bad_path = path  # type: ignore[attr-defined]
        raise


class SameIdentityFallback:
    """Replace an unreadable item by the next readable item of the same identity."""

    items: list[ReIDItem]
    skip_bad: bool

    def _init_fallback(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self._by_pid: dict[int, list[int]] = defaultdict(list)
        for i, it in enumerate(self.items):
            self._by_pid[it.pid].append(i)

    def load_or_replace(self, index: int, load: Callable[[int], T]) -> tuple[T, int, str]:
        """``(load(j), j, bad_path)``: ``j == index`` and ``bad_path == ""`` when it reads."""
        try:
            return load(index), index, ""
        except DatasetError as exc:
            if not self.skip_bad:
                raise
            bad = getattr(exc, "bad_path", self.items[index].path)
            first = exc
        same = self._by_pid[self.items[index].pid]
        pos = same.index(index)
        for j in same[pos + 1 :] + same[:pos]:
            try:
                return load(j), j, bad
            except DatasetError:
                continue
        raise DatasetError(
            f"{first} (no other image of identity {self.items[index].pid} is readable either)"
        ) from None
