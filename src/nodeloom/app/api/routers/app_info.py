"""App version and config, and the invocation cache, with InvokeAI's paths and operation ids."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

import nodeloom
from nodeloom.app.api.dependencies import Services
from nodeloom.app.services.invocation_cache.invocation_cache_common import InvocationCacheStatus

app_router = APIRouter(prefix="/v1/app", tags=["app"])


class AppVersion(BaseModel):
    version: str = Field(description="The nodeloom version")


class AppConfig(BaseModel):
    """The settings a client may need; paths and other server details stay private."""

    max_queue_size: int
    requeue_interrupted: bool
    max_attempts: int
    node_cache_size: int


@app_router.get("/version", operation_id="app_version")
def get_version() -> AppVersion:
    return AppVersion(version=nodeloom.__version__)


@app_router.get("/config", operation_id="get_config")
def get_config(services: Services) -> AppConfig:
    config = services.config
    return AppConfig(
        max_queue_size=config.max_queue_size,
        requeue_interrupted=config.requeue_interrupted,
        max_attempts=config.max_attempts,
        node_cache_size=config.node_cache_size,
    )


@app_router.get("/invocation_cache/status", operation_id="get_invocation_cache_status")
def get_invocation_cache_status(services: Services) -> InvocationCacheStatus:
    return services.invocation_cache.get_status()


@app_router.put("/invocation_cache/enable", operation_id="enable_invocation_cache")
def enable_invocation_cache(services: Services) -> None:
    services.invocation_cache.enable()


@app_router.put("/invocation_cache/disable", operation_id="disable_invocation_cache")
def disable_invocation_cache(services: Services) -> None:
    services.invocation_cache.disable()


@app_router.delete("/invocation_cache", operation_id="clear_invocation_cache")
def clear_invocation_cache(services: Services) -> None:
    services.invocation_cache.clear()
