"""The gallery search service: ``attnreid serve`` (a web page and a JSON API)."""

from attnreid.retrieval.calibration import Verdicts
from attnreid.serve.app import ApiError, create_app
from attnreid.serve.store import GalleryStore, Hit

__all__ = ["ApiError", "GalleryStore", "Hit", "Verdicts", "create_app"]
