"""The size of a request body: counted as it arrives, refused with 413 once it passes its limit.

Every body is limited by `max_request_mb`, an image upload by `max_upload_mb` instead. A body that declares a
larger Content-Length is refused before any of it is read; one without (chunked) is counted as it arrives, so
an oversize body is never held whole, or spooled to disk by the multipart parser.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nodeloom.app.services.config.config_default import NodeloomConfig

MB = 1024 * 1024
UPLOAD_PATH = "/api/v1/images/upload"


@dataclass(frozen=True)
class _BodyLimit:
    max_mb: int
    setting: str
    what: str

    @property
    def max_bytes(self) -> int:
        return self.max_mb * MB

    def error(self) -> HTTPException:
        return HTTPException(status_code=413, detail=f"{self.what} is larger than {self.max_mb} MB ({self.setting})")


class RequestBodyLimit:
    """A pure ASGI middleware bounding request bodies by the settings of `config`."""

    def __init__(self, app: ASGIApp, config: NodeloomConfig) -> None:
        self._app = app
        self._default = _BodyLimit(config.max_request_mb, "max_request_mb", "The request body")
        self._upload = _BodyLimit(config.max_upload_mb, "max_upload_mb", "The upload")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self._upload if scope["path"] == UPLOAD_PATH else self._default
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit.max_bytes:
            error = limit.error()
            await JSONResponse({"detail": error.detail}, status_code=error.status_code)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit.max_bytes:
                # Raised inside the app's reading of the body: FastAPI passes an HTTPException on, and the app's
                # handler answers it as it answers any other.
                raise limit.error()
            return message

        await self._app(scope, counted, send)
