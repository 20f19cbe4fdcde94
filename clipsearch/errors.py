"""Errors that cross component boundaries. The API maps each to one HTTP status."""

from __future__ import annotations


class ClipsearchError(Exception):
    """Base class. ``reason`` is a short machine-readable code, the message is for people."""

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason


class InvalidRequest(ClipsearchError):
    """The caller sent something we cannot serve (maps to 422)."""

    reason = "invalid_request"


class VectorDimensionError(InvalidRequest):
    reason = "vector_dimension"


class InvalidImage(InvalidRequest):
    """An image could not be decoded or breaks a limit (maps to 422, or 413 if too large)."""

    reason = "invalid_image"


class ImageTooLarge(InvalidImage):
    reason = "image_too_large"


class NotFound(ClipsearchError):
    reason = "not_found"


class Conflict(ClipsearchError):
    """The request contradicts the state of the index (maps to 409), e.g. a query encoded
    in another embedding space than the active generation's."""

    reason = "conflict"


class BackendUnavailable(ClipsearchError):
    """The index or the encoder cannot be reached right now (maps to 503 + Retry-After)."""

    reason = "unavailable"

    def __init__(self, message: str, *, reason: str | None = None, retry_after_s: int = 5) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_s = retry_after_s


class FeedBlocked(BackendUnavailable):
    """Vespa answered 507: the content node's disk or memory limit blocks writes."""

    reason = "feed_blocked"


class BackendError(ClipsearchError):
    """The index answered with an error that is not the caller's fault (maps to 502)."""

    reason = "backend_error"
