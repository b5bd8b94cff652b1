"""How routes reach the services: the app holds them in `app.state`, built by its lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from nodeloom.app.api.shutdown import Shutdown
from nodeloom.app.api.sockets import SocketBridge
from nodeloom.app.services.invocation_services import InvocationServices


def get_services(request: Request) -> InvocationServices:
    services: InvocationServices = request.app.state.services
    return services


def get_sockets(request: Request) -> SocketBridge:
    sockets: SocketBridge = request.app.state.sockets
    return sockets


def get_shutdown(request: Request) -> Shutdown:
    shutdown: Shutdown = request.app.state.shutdown
    return shutdown


Services = Annotated[InvocationServices, Depends(get_services)]
Sockets = Annotated[SocketBridge, Depends(get_sockets)]
ServerShutdown = Annotated[Shutdown, Depends(get_shutdown)]
