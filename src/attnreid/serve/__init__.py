"""The gallery search service: ``attnreid serve`` (a web page and a JSON API)."""

from attnreid.serve.app import ApiError, create_app
from attnreid.serve.store import GalleryStore

__all__ = ["ApiError", "GalleryStore", "create_app"]
