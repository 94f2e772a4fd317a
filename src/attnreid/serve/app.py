"""``attnreid serve``: a web page and a JSON API to search a gallery of person crops.

The page (``static/``, plain HTML and JavaScript, no build step) and the API are one FastAPI
application over a :class:`~attnreid.serve.store.GalleryStore` and a
:class:`~attnreid.evaluation.extractor.FeatureExtractor`:

============================  =================================================================
``GET  /api/info``            the gallery (size, cameras, time range), the model, the thresholds
``GET  /api/crops``           gallery items, paged (``offset``, ``limit``, ``camera``)
``GET  /api/crops/{id}``      one item's metadata; ``/api/crops/{id}/image`` its image
``POST /api/search``          form: ``image`` (a file) or ``crop_id``; ``top``, ``offset``,
                              ``cameras`` (``1,3``: 1-based, as shown), ``time_from``,
                              ``time_to``: the ranked gallery with a verdict per result
``POST /api/crops``           form: ``image``, optional ``pid``, ``camera`` (1-based), ``time``:
                              add a crop to the gallery (saved before the answer)
``POST /api/attention``       form: ``image`` or ``crop_id``: the attention-map picture (PNG)
============================  =================================================================

**Verdicts.** With thresholds from ``attnreid calibrate`` (distances at chosen false match
rates), a result is a *match*, *possible* or *no match*
(:class:`~attnreid.retrieval.calibration.Verdicts`: ``--fmr``, default 1e-3, or
``--max-distance``). Without either there is no verdict.

**Safety.** The server binds to 127.0.0.1 unless told otherwise; it serves only the images the
index names (a request names an item id, never a path); an upload larger than ``max_upload``
bytes is refused (413) and an image of more than ``max_pixels`` pixels is refused from its
header, before decoding (a decompression bomb gets a 400 with a reason, not a crash); a bad
request gets a 4xx with ``{"error": "<one line>"}``, never a traceback.
"""

from __future__ import annotations

import io
import math
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from attnreid.data.images import read_image
from attnreid.errors import AttnReidError
from attnreid.evaluation.extractor import FeatureExtractor
from attnreid.retrieval.calibration import Verdicts
from attnreid.retrieval.gallery import parse_crop_name
from attnreid.retrieval.index import SearchHit
from attnreid.serve.store import GalleryStore

__all__ = ["ApiError", "create_app"]

MAX_UPLOAD = 8 * 1024 * 1024  # bytes
MAX_PIXELS = 4096 * 4096
IMAGE_TYPES = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}


class ApiError(Exception):
    """A request the service refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _number(form: Any, key: str, kind: type, default: Any = None, lo: int | None = None) -> Any:
    """The form field ``key`` as an ``int`` or a finite ``float`` (``default`` when absent)."""
    raw = form.get(key)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise ApiError(400, f"{key} must be {what}, got {str(raw)[:40]!r}") from None
    if kind is float and not math.isfinite(value):
        raise ApiError(400, f"{key} must be a finite number")
    if lo is not None and value < lo:
        raise ApiError(400, f"{key} must be at least {lo}, got {value}")
    return value


def create_app(
    store: GalleryStore,
    extractor: FeatureExtractor,
    verdicts: Verdicts | None = None,
    *,
    max_upload: int = MAX_UPLOAD,
    max_pixels: int = MAX_PIXELS,
) -> FastAPI:
    """The FastAPI application of the service (run it with uvicorn)."""
    verdicts = verdicts or Verdicts()
    model = extractor.model
    has_attention = callable(getattr(model, "attention_maps", None))
    infer = threading.Lock()  # one forward pass at a time: the cores are shared anyway
    app = FastAPI(title="attnreid gallery search", docs_url="/api/docs", redoc_url=None)
    static = resources.files("attnreid.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.reason}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "path"))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, 422)

    @app.exception_handler(AttnReidError)
    async def _user_error(request: Request, exc: AttnReidError) -> JSONResponse:
        return JSONResponse({"error": str(exc).splitlines()[0]}, status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, 500)

    @app.middleware("http")
    async def _size_limit(request: Request, call_next: Any) -> Response:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_upload + 65536:
            return JSONResponse(
                {
                    "error": f"request of {int(length):,} bytes; uploads are limited to "
                    f"{max_upload:,} bytes"
                },
                status_code=413,
            )
        return await call_next(request)

    async def _form(request: Request) -> Any:
        try:
            return await request.form(max_files=1, max_fields=16)
        except Exception as exc:  # malformed multipart bodies of many kinds
            raise ApiError(400, f"cannot read the form: {str(exc).splitlines()[0][:120]}") from None

    async def _upload(form: Any) -> tuple[bytes, Image.Image, str, str]:
        """(bytes, RGB image, suffix, file name) of the form's ``image`` file."""
        file = form.get("image")
        if not isinstance(file, UploadFile):
            raise ApiError(400, "the form has no 'image' file")
        data = await file.read(max_upload + 1)
        if len(data) > max_upload:
            raise ApiError(413, f"image larger than {max_upload:,} bytes")
        name = Path(file.filename or "upload").name
        image = read_image(io.BytesIO(data), max_pixels=max_pixels, name=name)  # checks first
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format or ""
        if kind not in IMAGE_TYPES:
            raise ApiError(
                400,
                f"{name}: image format {kind or '?'} is not accepted ({', '.join(IMAGE_TYPES)})",
            )
        return data, image, IMAGE_TYPES[kind], name

    def _item(item_id: int) -> SearchHit:
        try:
            return store.item(item_id)
        except KeyError:
            raise ApiError(404, f"no crop {item_id} (the gallery has {len(store)})") from None

    def _shown(hit: SearchHit) -> dict[str, Any]:
        """An item as the API shows it: the record's JSON, without the file path, with the
        image's URL."""
        return {**hit.as_dict(path=False), "image": f"/api/crops/{hit.id}/image"}

    async def _query(form: Any) -> tuple[Image.Image, dict[str, Any]]:
        crop_id = _number(form, "crop_id", int, lo=0)
        if crop_id is not None:
            hit = _item(crop_id)
            image = read_image(hit.path, max_pixels=max_pixels, name=Path(hit.path).name)
            return image, {"crop": _shown(hit)}
        _, image, _, name = await _upload(form)
        return image, {"upload": name}

    def _feature(image: Image.Image) -> np.ndarray:
        with infer:
            return extractor([image])[0]

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return Response((static / "index.html").read_text(encoding="utf-8"), media_type="text/html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        times = store.index.meta.times
        finite = times[np.isfinite(times)]
        return {
            "size": len(store),
            "cameras": [c + 1 for c in store.cameras],
            "time_range": [float(finite.min()), float(finite.max())] if finite.size else None,
            "model": store.index.info.get("model"),
            "metric": store.index.metric,
            "verdicts": verdicts.describe,
            "attention": has_attention,
        }

    @app.get("/api/crops")
    def crops(offset: int = 0, limit: int = 60, camera: int | None = None) -> dict[str, Any]:
        if offset < 0 or not 1 <= limit <= 500:
            raise ApiError(400, "offset must be >= 0 and limit between 1 and 500")
        ids = np.arange(len(store))
        if camera is not None:
            ids = ids[store.index.meta.camids[: len(ids)] == camera - 1]
        page_ids = ids[offset : offset + limit]
        return {"total": int(ids.size), "items": [_shown(store.item(int(i))) for i in page_ids]}

    @app.get("/api/crops/{item_id}")
    def crop(item_id: int) -> dict[str, Any]:
        return _shown(_item(item_id))

    @app.get("/api/crops/{item_id}/image")
    def crop_image(item_id: int) -> FileResponse:
        path = Path(_item(item_id).path)
        if not path.is_file():
            raise ApiError(404, f"the image of crop {item_id} is missing on the server")
        return FileResponse(path, headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/search")
    async def search(request: Request) -> dict[str, Any]:
        form = await _form(request)
        image, query = await _query(form)
        top = _number(form, "top", int, 12, lo=1)
        offset = _number(form, "offset", int, 0, lo=0)
        raw = str(form.get("cameras") or "").strip()
        try:
            cameras = [int(c) - 1 for c in raw.split(",") if c.strip()] if raw else None
        except ValueError:
            raise ApiError(
                400, f"cameras must be numbers separated by commas, got {raw[:40]!r}"
            ) from None
        feature = _feature(image)
        hits, total = store.search(
            feature,
            top=min(top, 200),
            offset=offset,
            cameras=cameras,
            time_from=_number(form, "time_from", float),
            time_to=_number(form, "time_to", float),
            exclude=query["crop"]["id"] if "crop" in query else None,
            verdict=verdicts if verdicts else None,
        )
        results = [_shown(h) for h in hits]
        return {"query": query, "total": total, "offset": offset, "results": results}

    @app.post("/api/crops")
    async def add_crop(request: Request) -> dict[str, Any]:
        form = await _form(request)
        data, image, suffix, name = await _upload(form)
        pid, cam, t = parse_crop_name(name)
        pid = _number(form, "pid", int, pid)
        camera = _number(form, "camera", int, cam + 1 if cam >= 0 else None, lo=1)
        time = _number(form, "time", float)
        item_id = store.add(
            data,
            suffix,
            _feature(image),
            pid=pid if pid is not None else -1,
            camid=camera - 1 if camera is not None else -1,
            time=time if time is not None else t,
        )
        return _shown(store.item(item_id))

    @app.post("/api/attention")
    async def attention(request: Request) -> Response:
        if not has_attention:
            raise ApiError(400, f"model {store.index.info.get('model')!r} has no attention maps")
        from attnreid.viz.attention import attention_png, model_attention

        image, _ = await _query(await _form(request))
        with infer:
            shown, maps = model_attention(extractor, image)
        return Response(attention_png(shown, maps), media_type="image/png")  # as viz attention

    return app
