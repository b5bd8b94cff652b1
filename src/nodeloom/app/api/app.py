"""The FastAPI app (its lifespan builds and starts the services for a root folder, and stops them) and its server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

import nodeloom
from nodeloom.app.api.routers.app_info import app_router
from nodeloom.app.api.routers.board_images import board_images_router
from nodeloom.app.api.routers.boards import boards_router
from nodeloom.app.api.routers.images import images_router
from nodeloom.app.api.routers.model_manager import model_manager_router
from nodeloom.app.api.routers.monitoring import monitoring_router
from nodeloom.app.api.routers.session_queue import session_queue_router
from nodeloom.app.api.shutdown import NodeloomServer, Shutdown
from nodeloom.app.api.sockets import SOCKET_PATH, SocketBridge
from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.invocations.custom_nodes import load_custom_nodes
from nodeloom.app.services.board_records.board_records_common import BoardRecordNotFoundError, InvalidBoardNameError
from nodeloom.app.services.config.config_default import NodeloomConfig
from nodeloom.app.services.image_files.image_files_common import ImageFileNotFoundError
from nodeloom.app.services.image_records.image_records_common import ImageRecordNotFoundError
from nodeloom.app.services.invocation_services import build_services
from nodeloom.app.services.invoker import Invoker
from nodeloom.app.services.model_install.model_install_common import ModelBaseUnknownError
from nodeloom.app.services.model_records.model_records_common import DuplicateModelError, UnknownModelError
from nodeloom.app.services.names.names_common import InvalidImageNameError
from nodeloom.app.services.session_queue.session_queue_common import (
    BatchNotFoundError,
    BatchValidationError,
    QueueFullError,
    SessionQueueItemNotFoundError,
)
from nodeloom.app.services.shared.graph_common import GraphError
from nodeloom.backend.model_manager.configs import InvalidModelConfigError
from nodeloom.backend.model_manager.errors import InvalidModelError, ModelFileError, ModelPathNotFoundError
from nodeloom.errors import NodeloomError

logger = logging.getLogger(__name__)

# The status for each kind of error a client can cause; anything else a client sends that nodeloom refuses is 400.
ERROR_STATUS: list[tuple[type[Exception], int]] = [
    (SessionQueueItemNotFoundError, 404),
    (BatchNotFoundError, 404),
    (ImageRecordNotFoundError, 404),
    (ImageFileNotFoundError, 404),
    (BoardRecordNotFoundError, 404),
    (QueueFullError, 409),
    (BatchValidationError, 422),
    (GraphError, 422),
    (InvalidImageNameError, 422),
    (InvalidBoardNameError, 422),
    (UnknownModelError, 404),
    (ModelPathNotFoundError, 404),
    (DuplicateModelError, 409),
    (ModelBaseUnknownError, 422),
    (InvalidModelConfigError, 422),
    (InvalidModelError, 415),
    (ModelFileError, 415),
    (NodeloomError, 400),
]


async def _nodeloom_error(request: Request, exc: Exception) -> JSONResponse:
    status = next(code for kind, code in ERROR_STATUS if isinstance(exc, kind))
    return JSONResponse(status_code=status, content={"detail": str(exc), "error_type": type(exc).__name__})


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    # A model validated inside a route (not by FastAPI) failed: the client sent it, so it is a 422.
    assert isinstance(exc, ValidationError)
    return JSONResponse(status_code=422, content={"detail": exc.errors(include_url=False, include_context=False)})


class NodeloomApp(FastAPI):
    """The API, with socket.io served ahead of the middleware.

    Under FastAPI's middleware every frame socket.io sends would pass through each middleware's `send` wrapper.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and scope["path"].startswith(SOCKET_PATH):
            sockets: SocketBridge = self.state.sockets
            await sockets.asgi(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(config: NodeloomConfig) -> NodeloomApp:
    """The app for `config`; nothing is opened or started until its lifespan begins."""
    sockets = SocketBridge()
    shutdown = Shutdown(config.shutdown_timeout_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        load_builtin_nodes()
        report = load_custom_nodes(config.nodes_path)
        for name, error in report.failed.items():
            logger.error("The node pack %s was skipped: %s", name, error)
        services = build_services(config)
        app.state.services = services
        invoker = Invoker(services)
        await sockets.start(services.events)
        invoker.start()
        logger.info("nodeloom %s serving root %s", nodeloom.__version__, config.root)
        try:
            yield
        finally:
            invoker.stop(timeout_s=shutdown.remaining_s())
            await sockets.stop()

    app = NodeloomApp(title="nodeloom", version=nodeloom.__version__, lifespan=lifespan)
    app.state.sockets = sockets
    app.state.shutdown = shutdown
    for kind, _ in ERROR_STATUS:
        app.add_exception_handler(kind, _nodeloom_error)
    app.add_exception_handler(ValidationError, _validation_error)
    app.include_router(session_queue_router, prefix="/api")
    app.include_router(app_router, prefix="/api")
    app.include_router(images_router, prefix="/api")
    app.include_router(boards_router, prefix="/api")
    app.include_router(board_images_router, prefix="/api")
    app.include_router(model_manager_router, prefix="/api")
    app.include_router(monitoring_router)

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
