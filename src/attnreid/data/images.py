"""Reading images robustly.

Images are decoded by content, not by extension (a real-world quirk: some datasets ship JPEG
data in ``.png`` files), converted to RGB (grayscale, palette and RGBA images included), and
fully decoded on open so that a truncated file fails here, with its name, rather than deep
inside a transform.
"""

from __future__ import annotations

import os

from PIL import Image, UnidentifiedImageError

from attnreid.errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def read_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open ``path`` as an RGB image; raise :class:`DatasetError` if it is unreadable."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "RGB":
                return img.copy()
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = Image.new("RGB", rgba.size, (0, 0, 0))
                background.paste(rgba, mask=rgba.getchannel("A"))
                return background
            return img.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(f"image not found: {path}") from None
    except UnidentifiedImageError:
        raise DatasetError(f"not an image (cannot identify its format): {path}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"unreadable or truncated image {path}: {exc}") from None
