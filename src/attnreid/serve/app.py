"""``attnreid serve``: a web page and a JSON API to search a gallery of person crops.

The page (``static/``, plain HTML and JavaScript, no build step) and the API are one FastAPI
application over a :class:`~attnreid.serve.store.GalleryStore` and a
:class:`~attnreid.evaluation.extractor.FeatureExtractor`, behind :class:`~attnreid.serve.guard.
Guard` (who may write, how much anyone may send):

============================  =================================================================
``GET  /api/info``            the gallery (size, cameras, time range), the model, the thresholds
``GET  /api/crops``           gallery items, paged (``offset``, ``limit``, ``camera``)
``GET  /api/crops/{id}``      one item's metadata; ``/api/crops/{id}/image`` its image
``POST /api/search``          form: ``image`` (a file) or ``crop_id``; ``top``, ``offset``,
                              ``cameras`` (``1,3``: 1-based, as shown), ``time_from``,
                              ``time_to``: the ranked gallery with a verdict per result
``POST /api/crops``           form: ``image``, optional ``pid``, ``camera`` (1-based), ``time``:
                              add a crop to the gallery (on disk before the answer)
``POST /api/attention``       form: ``image`` or ``crop_id``: the attention-map picture (PNG)
============================  =================================================================

Every form field is declared with its type and limits, so the OpenAPI schema
(``/openapi.json``) describes them; a request outside them is a 400 with ``{"error": "<one
line>"}`` that names the field and the limit, as is every refusal: never a traceback.

**Work off the event loop.** Decoding, the network, the index and the drawing run in worker
threads; the network's forwards go through one :class:`~attnreid.serve.batcher.Batcher`
(concurrent searches share a batch), a search by gallery crop uses the crop's stored vector
(no forward), and at most ``max_pending`` searches / additions are in progress at once: past
that, 503 with ``Retry-After``. Each answer's ``Server-Timing`` header gives the time of its
parts (``parse``, ``decode``, ``preprocess``, ``forward``, ``search``, ``respond``).

**Verdicts.** With thresholds from ``attnreid calibrate`` (distances at chosen false match
rates), a result is a *match*, *possible* or *no match*
(:class:`~attnreid.retrieval.calibration.Verdicts`). Without them there is no verdict.

**Images.** Only JPEG, PNG, BMP, WebP and TIFF are opened (no other decoder is tried), and an
image of more than ``max_pixels`` pixels is refused from its header, before decoding.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException as StarletteHTTPException

from attnreid.data.images import read_image
from attnreid.errors import AttnReidError
from attnreid.evaluation.extractor import FeatureExtractor
from attnreid.retrieval.calibration import Verdicts
from attnreid.retrieval.gallery import parse_crop_name
from attnreid.retrieval.index import SearchHit
from attnreid.serve.batcher import Batcher
from attnreid.serve.guard import Guard
from attnreid.serve.store import GalleryStore

__all__ = ["ApiError", "create_app"]

MAX_UPLOAD = 8 * 1024 * 1024  # bytes
MAX_PIXELS = 4096 * 4096
MAX_TOP, MAX_OFFSET, MAX_ID, MAX_CAMERA, MAX_TIME = 200, 10_000, 2**62, 10**6, 1e18
IMAGE_TYPES = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}


class ApiError(Exception):
    """A request the service refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers


class _Timing:
    """The durations of a request's parts, for its ``Server-Timing`` header."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, float]] = []

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.parts.append((name, 1000 * (time.perf_counter() - t0)))

    def header(self) -> str:
        return ", ".join(f"{n};dur={d:.2f}" for n, d in self.parts)


def _decode(data: bytes, name: str, max_pixels: int) -> tuple[Image.Image, str]:
    """(RGB image, file suffix) of an upload in an accepted format."""
    try:
        with Image.open(io.BytesIO(data), formats=list(IMAGE_TYPES)) as probe:
            kind = probe.format or ""
    except Image.DecompressionBombError:  # read_image refuses it, in one line
        read_image(io.BytesIO(data), max_pixels=max_pixels, name=name, formats=list(IMAGE_TYPES))
        raise
    except (UnidentifiedImageError, OSError, ValueError):
        raise ApiError(
            400, f"not an image of an accepted format ({', '.join(IMAGE_TYPES)}): {name}"
        ) from None
    image = read_image(io.BytesIO(data), max_pixels=max_pixels, name=name, formats=[kind])
    return image, IMAGE_TYPES[kind]


def _cameras(text: str | None) -> list[int] | None:
    """``"1,3"`` (1-based, as shown) -> ``[0, 2]``."""
    if not text or not text.strip():
        return None
    try:
        cams = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        what = f"cameras must be numbers separated by commas, got {text[:40]!r}"
        raise ApiError(400, what) from None
    if not all(1 <= c <= MAX_CAMERA for c in cams) or len(cams) > 64:
        raise ApiError(400, f"cameras must be up to 64 numbers between 1 and {MAX_CAMERA:,}")
    return [c - 1 for c in cams]


def create_app(
    store: GalleryStore,
    extractor: FeatureExtractor,
    verdicts: Verdicts | None = None,
    *,
    max_upload: int = MAX_UPLOAD,
    max_pixels: int = MAX_PIXELS,
    token: str | None = None,
    read_only: bool = False,
    bind_host: str = "127.0.0.1",
    allowed_hosts: tuple[str, ...] = (),
    cors_origins: tuple[str, ...] = (),
    max_batch: int = 8,
    batch_wait_ms: float = 2.0,
    max_pending: int = 16,
) -> Any:
    """The service's ASGI application (run it with uvicorn): the FastAPI app behind
    :class:`~attnreid.serve.guard.Guard`."""
    verdicts = verdicts or Verdicts()
    batcher = Batcher(extractor, max_batch=max_batch, wait_ms=batch_wait_ms)
    pending = threading.BoundedSemaphore(max_pending)
    has_attention = _draws_attention(extractor)
    app = FastAPI(title="attnreid gallery search", docs_url="/api/docs", redoc_url=None)
    app.state.batcher = batcher
    static = resources.files("attnreid.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.reason}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "path", "body"))
        message = str(first.get("msg", "invalid")).splitlines()[0]
        return JSONResponse({"error": f"{where}: {message}"}, 400)

    @app.exception_handler(AttnReidError)
    async def _user_error(request: Request, exc: AttnReidError) -> JSONResponse:
        return JSONResponse({"error": str(exc).splitlines()[0]}, status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, 500)

    @contextmanager
    def busy() -> Iterator[None]:
        if not pending.acquire(blocking=False):
            raise ApiError(503, f"busy: {max_pending} requests in progress, try again",
                           {"Retry-After": "1"})  # fmt: skip
        try:
            yield
        finally:
            pending.release()

    def upload(image: UploadFile | None, timing: _Timing) -> tuple[bytes, Image.Image, str, str]:
        if image is None:
            raise ApiError(400, "the form has no 'image' file")
        with timing("parse"):
            data = image.file.read(max_upload + 1)
        if len(data) > max_upload:
            raise ApiError(413, f"image larger than {max_upload:,} bytes")
        name = Path(image.filename or "upload").name[:200]
        with timing("decode"):
            decoded, suffix = _decode(data, name, max_pixels)
        return data, decoded, suffix, name

    def item(item_id: int) -> SearchHit:
        try:
            return store.item(item_id)
        except KeyError:
            raise ApiError(404, f"no crop {item_id} (the gallery has {len(store)})") from None

    def shown(hit: SearchHit) -> dict[str, Any]:
        """An item as the API shows it: the record's JSON, without the file path, with the
        image's URL."""
        return {**hit.as_dict(path=False), "image": f"/api/crops/{hit.id}/image"}

    def feature(image: Image.Image, timing: _Timing) -> np.ndarray:
        with timing("preprocess"):
            x = extractor.preprocess([image])[0]
        with timing("forward"):
            return batcher(x)

    def timed(body: dict[str, Any], timing: _Timing) -> JSONResponse:
        with timing("respond"):
            response = JSONResponse(body)
        response.headers["Server-Timing"] = timing.header()
        return response

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return Response((static / "index.html").read_text(encoding="utf-8"), media_type="text/html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        store.refresh()
        cameras, times = store.summary()
        return {
            "size": len(store),
            "cameras": [c + 1 for c in cameras],
            "time_range": list(times) if times else None,
            "model": store.index.info.get("model"),
            "metric": store.index.metric,
            "verdicts": verdicts.describe,
            "attention": has_attention,
            "writable": not read_only,
            "token": token is not None,
        }

    @app.get("/api/crops")
    def crops(
        offset: int = Query(0, ge=0, le=MAX_ID),
        limit: int = Query(60, ge=1, le=500),
        camera: int | None = Query(None, ge=1, le=MAX_CAMERA),
    ) -> dict[str, Any]:
        store.refresh()
        with store.lock:  # not half an addition: its path without its camera
            ids = np.arange(len(store))
            if camera is not None:
                ids = ids[store.index.meta.camids[: len(ids)] == camera - 1]
        page_ids = ids[offset : offset + limit]
        return {"total": int(ids.size), "items": [shown(store.item(int(i))) for i in page_ids]}

    @app.get("/api/crops/{item_id}")
    def crop(item_id: int = PathParam(ge=0, le=MAX_ID)) -> dict[str, Any]:
        return shown(item(item_id))

    @app.get("/api/crops/{item_id}/image")
    def crop_image(item_id: int = PathParam(ge=0, le=MAX_ID)) -> FileResponse:
        path = store.image_path(item(item_id))
        if not path.is_file():
            raise ApiError(404, f"the image of crop {item_id} is missing on the server")
        return FileResponse(path, headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/search")
    def search(
        image: UploadFile | None = File(None, description="the query crop"),
        crop_id: int | None = Form(None, ge=0, le=MAX_ID, description="or a gallery crop"),
        top: int = Form(12, ge=1, le=MAX_TOP),
        offset: int = Form(0, ge=0, le=MAX_OFFSET),
        cameras: str | None = Form(None, max_length=400, description="1-based, e.g. 1,3"),
        time_from: float | None = Form(None, ge=-MAX_TIME, le=MAX_TIME, allow_inf_nan=False),
        time_to: float | None = Form(None, ge=-MAX_TIME, le=MAX_TIME, allow_inf_nan=False),
    ) -> JSONResponse:
        timing = _Timing()
        with busy():
            cams = _cameras(cameras)
            store.refresh()
            if crop_id is not None:
                query: dict[str, Any] = {"crop": shown(item(crop_id))}
                query_feature = None
            else:
                _, decoded, _, name = upload(image, timing)
                query = {"upload": name}
                query_feature = feature(decoded, timing)
            with timing("search"):
                hits, total = store.search(
                    query_feature, top=top, offset=offset, crop_id=crop_id, cameras=cams,
                    time_from=time_from, time_to=time_to, verdict=verdicts or None,
                )  # fmt: skip
            body = {"query": query, "total": total, "offset": offset,
                    "results": [shown(h) for h in hits]}  # fmt: skip
            return timed(body, timing)

    @app.post("/api/crops")
    def add_crop(
        image: UploadFile = File(..., description="the crop to add"),
        pid: int | None = Form(None, ge=0, le=MAX_ID),
        camera: int | None = Form(None, ge=1, le=MAX_CAMERA),
        time: float | None = Form(None, ge=-MAX_TIME, le=MAX_TIME, allow_inf_nan=False),
    ) -> JSONResponse:
        timing = _Timing()
        with busy():
            data, decoded, suffix, name = upload(image, timing)
            named_pid, named_cam, named_time = parse_crop_name(name)
            pid = pid if pid is not None else named_pid
            camid = camera - 1 if camera is not None else named_cam
            if not (-1 <= pid <= MAX_ID and -1 <= camid < MAX_CAMERA):
                raise ApiError(400, f"{name}: the identity or camera in its name is out of range")
            when = time if time is not None else named_time
            if abs(when) > MAX_TIME:  # NaN passes: unknown
                raise ApiError(400, f"{name}: the time in its name is out of range")
            vector = feature(decoded, timing)
            with timing("store"):
                item_id = store.add(data, suffix, vector, pid=pid, camid=camid, time=when)
            return timed(shown(store.item(item_id)), timing)

    @app.post("/api/attention")
    def attention(
        image: UploadFile | None = File(None), crop_id: int | None = Form(None, ge=0, le=MAX_ID)
    ) -> Response:
        if not has_attention:
            raise ApiError(400, f"model {store.index.info.get('model')!r} has no attention maps")
        from attnreid.viz.attention import attention_png, model_attention

        with busy():
            if crop_id is not None:
                hit = item(crop_id)
                query = read_image(store.image_path(hit), max_pixels=max_pixels)
            else:
                query = upload(image, _Timing())[1]
            shown_image, maps = model_attention(extractor, query)
            return Response(attention_png(shown_image, maps), media_type="image/png")

    return Guard(
        app,
        bind_host=bind_host,
        token=token,
        read_only=read_only,
        allowed_hosts=allowed_hosts,
        cors_origins=cors_origins,
        max_body=max_upload + 65536,
    )


def _draws_attention(extractor: FeatureExtractor) -> bool:
    """Whether the model draws attention maps (tried once on a grey image)."""
    from attnreid.viz.attention import model_attention

    if not callable(getattr(extractor.model, "attention_maps", None)):
        return False
    try:
        model_attention(extractor, Image.new("RGB", extractor.size[::-1], (128, 128, 128)))
    except AttnReidError:
        return False
    return True
