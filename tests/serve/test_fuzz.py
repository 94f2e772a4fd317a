"""Property-based fuzzing of the search service's API with schemathesis, in-process.

The requests are generated from the app's own OpenAPI schema (``/openapi.json``) — fitting it
(*positive*) and breaking it (*negative*) — for every operation, and sent to the ASGI app
(FastAPI behind the Guard middleware) on a tiny synthetic gallery of a model with attention
maps. The image field of a form is, besides what schemathesis draws for it (text), one of a
set of real files: every accepted format in odd modes and sizes, a GIF (refused), truncated
ones, an image past the pixel limit, bodies past the upload limit, random bytes. Checks on
every answer: never a 5xx (nor an exception out of the app), and every 4xx is a JSON body
``{"error": "<one line>"}``. Deterministic (derandomized Hypothesis, no example database)."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from PIL import Image

import attnreid
from attnreid.retrieval.calibration import Verdicts
from attnreid.serve import GalleryStore, create_app
from tests.retrieval.helpers import build_index, fake_checkpoint

pytestmark = pytest.mark.slow
MAX_UPLOAD, MAX_PIXELS = 256 * 1024, 1_000_000
OPERATIONS = {
    "GET /api/info",
    "GET /api/crops",
    "GET /api/crops/{item_id}",
    "GET /api/crops/{item_id}/image",
    "POST /api/search",
    "POST /api/crops",
    "POST /api/attention",
}
#: Examples per operation and generation mode (an operation with few distinct requests, such
#: as GET /api/info, ends sooner).
EXAMPLES = {"POST /api/attention": 60, "POST /api/crops": 90, "POST /api/search": 110}
DEFAULT_EXAMPLES = 110
MIN_REQUESTS = 1000


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def _files(gallery_crop: Path) -> list[bytes]:
    """Uploads of every kind the image field should survive."""
    rgb = Image.frombytes("RGB", (24, 48), bytes(range(256)) * 13 + bytes(192))
    out = [gallery_crop.read_bytes()]
    for fmt, modes in {
        "JPEG": ("RGB", "L", "CMYK"),
        "PNG": ("RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I"),
        "BMP": ("RGB", "P", "1"),
        "WEBP": ("RGB", "RGBA"),
        "TIFF": ("RGB", "RGBA", "CMYK", "F", "I;16", "1", "LAB"),
        "GIF": ("P",),  # not an accepted format
    }.items():
        for mode in modes:
            for size in ((24, 48), (1, 1), (3, 300)):
                image = rgb.resize(size)
                image = image.convert(mode) if mode not in ("I;16", "LAB") else (
                    image.convert("L").convert("I").convert(mode) if mode == "I;16"
                    else image.convert("LAB"))  # fmt: skip
                try:
                    out.append(_encode(image, fmt))
                except (OSError, ValueError, KeyError):  # a mode the encoder does not write
                    continue
    out += [data[: len(data) // 2] for data in out[:12]]  # truncated
    out.append(_encode(Image.new("1", (1200, 1000)), "PNG"))  # past MAX_PIXELS
    out.append(_encode(rgb, "PNG") + b"\0" * (MAX_UPLOAD - 1000))  # past the upload limit
    out.append(b"\xff" * (MAX_UPLOAD + 70_000))  # past the Guard's body limit
    out += [b"", b"\x89PNG\r\n\x1a\n", b"II*\x00" + b"\xff" * 64, b"BM" + b"\0" * 60]
    return out


@pytest.fixture(scope="module")
def service(tiny_synth: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("fuzz")
    ckpt = fake_checkpoint(tmp / "sa.ckpt", tiny_synth, name="sa_resnet",
                           options={"backbone": "resnet18"})  # fmt: skip
    index = build_index(ckpt, tiny_synth / "bounding_box_test", tmp / "g.index")
    store = GalleryStore(index)
    app = create_app(
        store, attnreid.load(ckpt), Verdicts(max_distance=1e-3), max_upload=MAX_UPLOAD,
        max_pixels=MAX_PIXELS, allowed_hosts=("testserver",),
    )  # fmt: skip
    return app, _files(Path(store.index.paths[0]))


def _fault(response: Any) -> str | None:
    """What is wrong with an answer, or None."""
    status = response.status_code
    if status >= 500:
        return f"{status}: {response.content[:200]!r}"
    if 400 <= status < 500:
        try:
            body = json.loads(response.content)
        except ValueError:
            return f"{status} without a JSON body: {response.content[:200]!r}"
        if not (isinstance(body, dict) and set(body) == {"error"}):
            return f"{status} whose JSON is not {{'error': ...}}: {body!r:.200}"
        error = body["error"]
        if not isinstance(error, str) or not error or "\n" in error or "\r" in error:
            return f"{status} whose error is not one line: {error!r:.200}"
    return None


def _files_as_files(fastapi_app: Any) -> None:
    """Drop the ``null`` branch of the optional ``image`` fields in the app's schema (FastAPI's
    ``anyOf: [file, null]``): schemathesis sends a part of that schema without a file name, so
    the app would only ever see it as text, never as an uploaded file. (A null is never sent as
    a part anyway: a form without the field is generated too.)"""
    schemas = fastapi_app.openapi()["components"]["schemas"]  # the cached schema it serves
    for body in schemas.values():
        image = body.get("properties", {}).get("image", {})
        branches = [b for b in image.pop("anyOf", []) if b.get("type") != "null"]
        if branches:
            image.update(branches[0])


def _reason(response: Any) -> str:
    """A refusal's error, without the values it quotes (to count the kinds)."""
    error = json.loads(response.content)["error"]
    return re.sub(r"\d+", "N", error.split(":")[0] if ":" in error else error.split(",")[0])[:50]


class _Tally:
    """What the requests met: per operation, the number sent, the statuses, the kinds of
    refusal, and the faults (each kind once, with its case)."""

    def __init__(self) -> None:
        self.sent, self.statuses, self.reasons = Counter(), Counter(), Counter()
        self.faults: dict[str, Any] = {}
        self.unsatisfiable: list[str] = []

    def record(self, name: str, case: Any) -> None:
        try:
            response = case.call()
        except Exception as exc:  # an exception out of the app: a server error
            fault: str | None = f"exception {type(exc).__name__}: {exc}"
            self.statuses[f"{name} exception"] += 1
        else:
            self.statuses[f"{name} {response.status_code}"] += 1
            fault = _fault(response)
            if fault is None and response.status_code >= 400:
                self.reasons[f"{name} {response.status_code} {_reason(response)}"] += 1
        self.sent[name] += 1
        if fault is not None:
            self.faults.setdefault(f"{name}: {fault.splitlines()[0][:300]}", case)


KEEP, DROP = object(), object()  # a tweak that leaves schemathesis' value, or the field out


def _tweaks(files: list[bytes]) -> dict[str, Any]:
    """Fields as a real client sends them, put into many cases besides schemathesis' own
    values: an image file, an existing crop id, cameras as the page writes them, a time window
    (or the field left out)."""
    uploads = st.one_of(st.sampled_from(files), st.binary(max_size=300))
    form = st.fixed_dictionaries({
        "image": st.one_of(st.just(KEEP), uploads, uploads, uploads),
        "crop_id": st.one_of(st.just(KEEP), st.just(DROP), st.just(DROP), st.integers(0, 60)),
        "cameras": st.one_of(st.just(KEEP), st.just(DROP),
                             st.sampled_from(["1", "1,3", "2,3,", " 3 ", "4", "1,,2", "0"])),
        "time_from": st.one_of(st.just(KEEP), st.just(DROP), st.floats(-10, 1e4)),
        "time_to": st.one_of(st.just(KEEP), st.just(DROP), st.floats(-10, 1e4)),
    })  # fmt: skip
    path = st.fixed_dictionaries({"item_id": st.one_of(st.just(KEEP), st.integers(0, 60))})
    return {"form": form, "path": path, "none": st.just({})}


def _apply(case: Any, tweak: dict[str, Any], fields: set[str]) -> None:
    for key, value in tweak.items():
        if value is KEEP:
            continue
        if key == "item_id" and isinstance(case.path_parameters, dict):
            case.path_parameters[key] = value
        elif isinstance(case.body, dict) and key in fields:
            if value is DROP:
                case.body.pop(key, None)
            else:
                case.body[key] = value


def _fuzz(name: str, operation: Any, mode: Any, tweaks: Any, tally: _Tally) -> None:
    """Send ``EXAMPLES`` cases of ``operation`` generated in ``mode`` (derandomized, not
    shrunk: a fault is recorded, not raised)."""
    fields = {k for body in operation.body for k in body.form_properties}

    @settings(max_examples=EXAMPLES.get(name, DEFAULT_EXAMPLES), derandomize=True,
              database=None, deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode), tweak=tweaks)
    def send(case: Any, tweak: dict[str, Any]) -> None:
        _apply(case, tweak, fields)
        tally.record(name, case)

    try:
        send()
    except Unsatisfiable:  # GET /api/info has nothing to break
        assert mode == schemathesis.GenerationMode.NEGATIVE, name
        tally.unsatisfiable.append(name)


def test_generated_requests_never_get_a_5xx_and_every_4xx_is_one_json_line(service):
    app, files = service
    _files_as_files(app.app)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = {
        f"{op.method.upper()} {op.path}": op
        for op in (result.ok() for result in schema.get_all_operations())
    }
    assert set(operations) == OPERATIONS
    tweaks, tally = _tweaks(files), _Tally()
    for name, operation in sorted(operations.items()):
        kind = "form" if name.startswith("POST") else "path" if "{" in name else "none"
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            _fuzz(name, operation, mode, tweaks[kind], tally)

    total = sum(tally.sent.values())
    print(f"\n{total} requests:", dict(tally.sent))
    print("statuses:", dict(sorted(tally.statuses.items())))
    print("no negative request for:", tally.unsatisfiable)
    print("refusals:", *(f"{n} x {r}" for r, n in tally.reasons.most_common()), sep="\n  ")
    faults = "\n".join(f"{f}\n    {c.as_curl_command()[:400]}" for f, c in tally.faults.items())
    assert not tally.faults, f"{len(tally.faults)} kinds of fault:\n{faults}"
    assert total >= MIN_REQUESTS
    assert set(tally.sent) == OPERATIONS
