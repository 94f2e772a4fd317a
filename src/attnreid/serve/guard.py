"""Who may write to ``attnreid serve``, and how much anyone may send: one ASGI middleware.

Checks, in this order, before the application sees a request:

* **Host** (DNS rebinding): a server bound to a loopback address answers only requests whose
  ``Host`` is a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``) or one of
  ``allowed_hosts``; a page on ``attacker.example`` that resolves its name to 127.0.0.1 gets a
  400. On other addresses every host is accepted unless ``allowed_hosts`` narrows it (writes
  there need the token anyway).
* **Writes** (``POST /api/crops``): refused with 403 when the server is read-only, when a
  token is set and the request does not carry it (``Authorization: Bearer <token>``, compared
  in constant time), and when the request comes from a web page of another origin: a browser
  sends ``Origin`` with every cross-site POST, and only the server's own origin and
  ``cors_origins`` may write. No CORS headers are sent unless ``cors_origins`` lists some.
* **Body size**: the bytes are counted as they arrive, whatever ``Content-Length`` says
  (``Transfer-Encoding: chunked`` included); past ``max_body`` the request is answered 413 and
  nothing more is read or kept.

Every refusal is ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Any

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
WRITE_PATHS = ("/api/crops",)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


class _TooLarge(Exception):
    pass


async def _reply(send: Any, status: int, error: str, headers: Sequence = ()) -> None:
    body = json.dumps({"error": error}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), *headers],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class Guard:
    """The middleware (see the module docstring)."""

    def __init__(
        self,
        app: Any,
        *,
        bind_host: str = "127.0.0.1",
        token: str | None = None,
        read_only: bool = False,
        allowed_hosts: Sequence[str] = (),
        cors_origins: Sequence[str] = (),
        max_body: int = 8 * 2**20,
    ) -> None:
        self.app, self.token, self.read_only = app, token, read_only
        self.max_body, self.cors = max_body, set(cors_origins)
        names = {h.lower() for h in allowed_hosts}
        self.hosts = names | set(LOOPBACK_NAMES) if is_loopback(bind_host) else names

    def _host_ok(self, headers: dict[bytes, bytes]) -> bool:
        if not self.hosts:
            return True
        host = headers.get(b"host", b"").decode("latin-1").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in self.hosts

    def _write_refusal(self, scope: dict, headers: dict[bytes, bytes]) -> str | None:
        if self.read_only:
            return "this server is read-only: it does not add crops"
        origin = headers.get(b"origin", b"").decode("latin-1")
        if origin and origin != "null":
            own = {f"{scope.get('scheme', 'http')}://{headers.get(b'host', b'').decode('latin-1')}"}
            if origin not in own | self.cors:
                return f"a write from another origin ({origin[:60]}) is refused"
        elif origin == "null":
            return "a write from an opaque origin is refused"
        if self.token is not None:
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return "adding crops needs the server's token (Authorization: Bearer <token>)"
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if not self._host_ok(headers):
            return await _reply(send, 400, "unknown Host: this server answers its own names")
        if scope["method"] == "POST" and scope["path"] in WRITE_PATHS:
            refusal = self._write_refusal(scope, headers)
            if refusal:
                return await _reply(send, 403, refusal)
        origin = headers.get(b"origin", b"").decode("latin-1")
        cors = [(b"access-control-allow-origin", origin.encode())] if origin in self.cors else []
        if scope["method"] == "OPTIONS" and cors:
            allow = (b"access-control-allow-headers", b"authorization, content-type")
            return await _reply(send, 204, "", [*cors, allow])
        seen, started, over = 0, False, False
        too_large = f"request body over the limit of {self.max_body:,} bytes"

        async def counted() -> dict:
            nonlocal seen, over
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                over = True
                raise _TooLarge
            return message

        async def sending(message: dict) -> None:
            nonlocal started
            if over:  # the app's answer to the body it could not read (FastAPI's form parser
                if not started:  # turns any error into a 400): the 413 instead
                    started = True
                    await _reply(send, 413, too_large)
                return
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except _TooLarge:
            if not started:
                await _reply(send, 413, too_large)
