"""Limits on what a request may send: the body size (413), checked while it streams in,
and 422 replies that quote a short excerpt of the input instead of all of it."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.text import excerpt

#: The longest `msg` a 422 reply carries (messages of our own validators can name input).
MSG_CHARS = 300


def _too_large(max_bytes: int) -> HTTPException:
    return HTTPException(413, detail=f"request body larger than {max_bytes} bytes")


class BodySizeLimit:
    """413 for a request body over `max_bytes`: at once when Content-Length says so,
    else as soon as the bytes received pass it (never buffering the rest)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            # Answered before a byte of the body is read.
            if declared.isdigit():
                reply = JSONResponse({"detail": _too_large(self.max_bytes).detail}, 413)
            else:
                reply = JSONResponse({"detail": "bad Content-Length"}, 400)
            await reply(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised where the app reads the body: FastAPI answers it as a 413.
                    raise _too_large(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


def _short(error: dict[str, Any]) -> dict[str, Any]:
    short: dict[str, Any] = {
        "type": error.get("type"),
        "loc": [part if isinstance(part, int) else excerpt(part) for part in error.get("loc", ())],
        "msg": excerpt(str(error.get("msg", "")), MSG_CHARS),
    }
    if "input" in error:
        short["input"] = excerpt(error["input"])
    if "ctx" in error:
        short["ctx"] = {
            k: v if isinstance(v, int | bool) or v is None else excerpt(str(v))
            for k, v in error["ctx"].items()
        }
    return short


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each problem, quoting at most an excerpt of the input (a 10 MB note is
    not sent back)."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [_short(e) for e in exc.errors()]}, status_code=422)
