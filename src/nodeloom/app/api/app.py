"""The FastAPI app (its lifespan builds and starts the services for a root folder, and stops them) and its server."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.types import Receive, Scope, Send

import nodeloom
from nodeloom.app.api.limits import MB, RequestBodyLimit
from nodeloom.app.api.routers.app_info import app_router
from nodeloom.app.api.routers.board_images import board_images_router
from nodeloom.app.api.routers.boards import boards_router
from nodeloom.app.api.routers.images import images_router
from nodeloom.app.api.routers.model_manager import model_manager_router
from nodeloom.app.api.routers.monitoring import monitoring_router
from nodeloom.app.api.routers.session_queue import session_queue_router
from nodeloom.app.api.security import EdgeGuard, document_bearer_auth
from nodeloom.app.api.shutdown import NodeloomServer, Shutdown
from nodeloom.app.api.sockets import SOCKET_PATH, SocketBridge
from nodeloom.app.api.web_ui import mount_web_ui
from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.invocations.custom_nodes import load_custom_nodes
from nodeloom.app.invocations.limits import LimitExceededError
from nodeloom.app.services.board_records.board_records_common import BoardRecordNotFoundError, InvalidBoardNameError
from nodeloom.app.services.bulk_download.bulk_download_common import (
    BulkDownloadBusyError,
    BulkDownloadNotFoundError,
    BulkDownloadTooLargeError,
    InvalidBulkDownloadNameError,
)
from nodeloom.app.services.config.config_default import NodeloomConfig
from nodeloom.app.services.image_files.image_files_common import ImageFileNotFoundError
from nodeloom.app.services.image_records.image_records_common import ImageRecordNotFoundError
from nodeloom.app.services.invocation_services import build_services
from nodeloom.app.services.invoker import Invoker
from nodeloom.app.services.model_install.model_install_common import (
    InstallJobStateError,
    ModelBaseUnknownError,
    ModelPathNotAllowedError,
    ModelSettingUnknownError,
    UnknownInstallJobError,
)
from nodeloom.app.services.model_records.model_records_common import DuplicateModelError, UnknownModelError
from nodeloom.app.services.names.names_common import InvalidImageNameError
from nodeloom.app.services.session_queue.session_queue_common import (
    BatchExistsError,
    BatchNotFoundError,
    BatchValidationError,
    QueueFullError,
    SessionQueueItemNotFoundError,
    SessionQueueItemUnreadableError,
    WebhookDueError,
)
from nodeloom.app.services.shared.database.database_common import (
    DatabaseError,
    DatabaseIntegrityError,
    DatabaseValueError,
)
from nodeloom.app.services.shared.graph_common import GraphError
from nodeloom.backend.model_manager.configs import InvalidModelConfigError
from nodeloom.backend.model_manager.errors import (
    InvalidModelError,
    ModelFileError,
    ModelLinkNotAllowedError,
    ModelPathNotFoundError,
)
from nodeloom.errors import NodeloomError

logger = logging.getLogger(__name__)

# The status for each kind of error; anything else a client sends that nodeloom refuses is 400.
ERROR_STATUS: list[tuple[type[Exception], int]] = [
    (SessionQueueItemNotFoundError, 404),
    (BatchNotFoundError, 404),
    (ImageRecordNotFoundError, 404),
    (ImageFileNotFoundError, 404),
    (BoardRecordNotFoundError, 404),
    (BulkDownloadNotFoundError, 404),
    (QueueFullError, 409),
    (BulkDownloadBusyError, 429),
    (BatchExistsError, 409),
    (SessionQueueItemUnreadableError, 409),
    (WebhookDueError, 409),
    (LimitExceededError, 422),
    (BulkDownloadTooLargeError, 422),
    (BatchValidationError, 422),
    (GraphError, 422),
    (InvalidImageNameError, 422),
    (InvalidBoardNameError, 422),
    (InvalidBulkDownloadNameError, 422),
    (UnknownModelError, 404),
    (UnknownInstallJobError, 404),
    (InstallJobStateError, 409),
    (ModelPathNotFoundError, 404),
    (ModelPathNotAllowedError, 403),
    (ModelLinkNotAllowedError, 403),
    (DuplicateModelError, 409),
    (ModelBaseUnknownError, 422),
    (ModelSettingUnknownError, 422),
    (InvalidModelConfigError, 422),
    (InvalidModelError, 415),
    (ModelFileError, 415),
    # The database's failures are not the client's: a change that raced another one, or the database unreachable.
    (DatabaseIntegrityError, 409),
    (DatabaseValueError, 422),
    (DatabaseError, 503),
    (NodeloomError, 400),
]


class ErrorResponse(BaseModel):
    """The body of every refused request."""

    detail: str | list[dict[str, Any]] = Field(
        description="What is wrong: a message, or one entry per problem where the request does not fit the schema"
    )
    error_type: str | None = Field(default=None, description="The kind of nodeloom error, where one was raised")


# In the OpenAPI schema of every route: the statuses of ERROR_STATUS, and 422 for a request that does not fit.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": HTTPStatus(status).phrase}
    for status in sorted({status for _, status in ERROR_STATUS} | {422})
}


async def _nodeloom_error(request: Request, exc: Exception) -> JSONResponse:
    status = next(code for kind, code in ERROR_STATUS if isinstance(exc, kind))
    return JSONResponse(status_code=status, content={"detail": str(exc), "error_type": type(exc).__name__})


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    # A model validated inside a route (not by FastAPI) failed: the client sent it, so it is a 422.
    assert isinstance(exc, ValidationError)
    errors = exc.errors(include_url=False, include_context=False)
    return JSONResponse(status_code=422, content={"detail": _json_safe(errors)})


async def _request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own handler, but for the input's floats that JSON cannot hold.
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": _json_safe(jsonable_encoder(exc.errors()))})


def _json_safe(value: Any) -> Any:
    """`value` with each float JSON cannot hold as its text: an error repeats the input, and Python's JSON reads
    `Infinity`, which no node takes, so a refused input may be one."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


class NodeloomApp(FastAPI):
    """The API behind the edge guard, with socket.io served ahead of the middleware.

    Every request passes the guard (`security.py`, built by the lifespan), then `dispatch`. Under FastAPI's
    middleware every frame socket.io sends would pass through each middleware's `send` wrapper.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
        else:
            guard: EdgeGuard = self.state.guard
            await guard(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """What the guard lets through: socket.io's requests to socket.io, the others to FastAPI."""
        if scope["path"].startswith(SOCKET_PATH):
            sockets: SocketBridge = self.state.sockets
            await sockets.asgi(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = document_bearer_auth(super().openapi())
        return self.openapi_schema


def create_app(config: NodeloomConfig) -> NodeloomApp:
    """The app for `config`; nothing is opened or started until its lifespan begins."""
    sockets = SocketBridge(replay_bytes=config.socket_replay_mb * MB)
    shutdown = Shutdown(config.shutdown_timeout_s)

    @asynccontextmanager
    async def lifespan(app: NodeloomApp) -> AsyncIterator[None]:
        load_builtin_nodes()
        load_custom_nodes(config.nodes_path)
        # No node code runs in this process unless the settings ask: the processors are child worker processes.
        services = build_services(config, worker_processes=config.worker_processes and config.run_processor)
        app.state.services = services
        guard = EdgeGuard(app.dispatch, config, services.auth_tokens)
        app.state.guard = guard
        await guard.warn_if_exposed()
        invoker = Invoker(services)
        await sockets.start(services.events, guard.tokens.accepts_socket)
        invoker.start()
        logger.info("nodeloom %s serving root %s", nodeloom.__version__, config.root)
        try:
            yield
        finally:
            invoker.stop(timeout_s=shutdown.remaining_s())
            await sockets.stop()

    app = NodeloomApp(title="nodeloom", version=nodeloom.__version__, lifespan=lifespan, responses=ERROR_RESPONSES)
    app.state.sockets = sockets
    app.state.shutdown = shutdown
    for kind, _ in ERROR_STATUS:
        app.add_exception_handler(kind, _nodeloom_error)
    app.add_exception_handler(ValidationError, _validation_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_middleware(RequestBodyLimit, config=config)
    app.include_router(session_queue_router, prefix="/api")
    app.include_router(app_router, prefix="/api")
    app.include_router(images_router, prefix="/api")
    app.include_router(boards_router, prefix="/api")
    app.include_router(board_images_router, prefix="/api")
    app.include_router(model_manager_router, prefix="/api")
    app.include_router(monitoring_router)
    mount_web_ui(app)

    @app.api_route("/api/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    def unknown_api_path(path: str) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": f"No API route /api/{path}"})

    return app


def create_server(config: NodeloomConfig) -> uvicorn.Server:
    """A uvicorn server for the app of `config`, on its host and port.

    Websocket compression is off: compressing each small event frame cost more CPU, on the loop that competes with
    the processor for the GIL, than the rest of sending it.
    """
    app = create_app(config)
    return NodeloomServer(
        uvicorn.Config(
            app, host=config.host, port=config.port, log_level=config.log_level, ws_per_message_deflate=False
        ),
        app.state.shutdown,
    )
