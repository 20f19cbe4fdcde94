"""Request-body limits counted while the body streams in, for every route of both services.

A ``Content-Length`` check alone lets a chunked body (no length header) through: the
framework then reads all of it before any validation. Here each ``http.request`` message is
counted as the application pulls it, and the first one past the limit raises ``BodyTooLarge``
(an HTTP 413) instead of being handed on; nothing past the limit is buffered. A declared
``Content-Length`` over the limit is refused before the application runs at all.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clipsearch.http_errors import error_response

REASON = "too_large"


def too_large_message(limit: int, declared: int | None = None) -> str:
    if declared is not None:
        return f"request body is {declared} bytes; the limit is {limit} bytes"
    return f"request body is larger than the limit of {limit} bytes"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once the streamed body passes the limit (413)."""

    def __init__(self, limit: int, reason: str = REASON) -> None:
        super().__init__(413, too_large_message(limit))
        self.limit = limit
        self.reason = reason


def counting_receive(receive: Receive, limit: int, reason: str = REASON) -> Receive:
    """``receive`` that raises ``BodyTooLarge`` when the body read so far passes ``limit``."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit, reason)
        return message

    return wrapped


def declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length", "")
    return int(value) if value.isdigit() else None


class BodyLimitMiddleware:
    """Plain ASGI: refuses a declared length over the limit, counts streamed bodies, and turns
    a ``BodyTooLarge`` that escaped the application into a 413 (if nothing was sent yet).
    ``limit_for`` picks the limit from the request headers (e.g. by content type)."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[Headers], int],
                 reason: str = REASON) -> None:
        self.app = app
        self.limit_for = limit_for
        self.reason = reason

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = self.limit_for(headers)
        declared = declared_length(headers)
        if declared is not None and declared > limit:
            await error_response(413, self.reason, too_large_message(limit, declared))(
                scope, receive, send)
            return
        await guarded_call(self.app, scope, counting_receive(receive, limit, self.reason),
                           send, self.reason)


async def guarded_call(app: ASGIApp, scope: Scope, receive: Receive, send: Send,
                       reason: str = REASON) -> None:
    """Run ``app``; a ``BodyTooLarge`` it let escape becomes a 413 if no response started."""
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, receive, tracking_send)
    except BodyTooLarge as exc:
        if started:
            raise
        await error_response(413, reason, str(exc.detail))(scope, receive, send)
