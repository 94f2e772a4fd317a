"""The gallery search service: ``attnreid serve`` (a web page and a JSON API)."""

from attnreid.serve.app import ApiError, Verdicts, create_app
from attnreid.serve.store import GalleryStore, Hit

__all__ = ["ApiError", "GalleryStore", "Hit", "Verdicts", "create_app"]
