"""The model manager over HTTP, with InvokeAI's paths and operation ids.

Installs are synchronous: the answer is the installed config, or a 4xx saying what is wrong with the path. Paths
name files on the server, so they must be absolute: the server's working folder is not the client's.
"""

from __future__ import annotations

from pathlib import PurePath

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import BaseModel, Field

from nodeloom.app.api.dependencies import Services
from nodeloom.app.services.model_install.model_install_common import RelativeModelPathError, ScanFolderResult
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.backend.model_manager.configs import AnyModelConfig
from nodeloom.backend.model_manager.load.cache_stats import CacheStats, EmptyModelCacheResult
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelFormat, ModelType

model_manager_router = APIRouter(prefix="/v2/models", tags=["model_manager"])

ModelKey = Path(description="The key of the model")


class ModelsList(BaseModel):
    models: list[AnyModelConfig] = Field(description="The models, by type, base and name")


def _absolute(path: str) -> str:
    if not PurePath(path).is_absolute():
        raise RelativeModelPathError(
            f"'{path}' is a relative path: send an absolute one, as the server does not share the client's folder"
        )
    return path


@model_manager_router.get("/", operation_id="list_model_records")
def list_model_records(
    services: Services,
    base_models: list[BaseModelType] | None = Query(default=None, description="Base models to include"),
    model_type: ModelType | None = Query(default=None, description="The type of model to get"),
    model_name: str | None = Query(default=None, description="Exact match on the name of the model"),
    model_format: ModelFormat | None = Query(default=None, description="Exact match on the format of the model"),
) -> ModelsList:
    """The installed models matching every filter given."""
    store = services.model_manager.store
    models: list[AnyModelConfig] = []
    bases: list[BaseModelType | None] = list(base_models) if base_models else [None]
    for base in bases:
        models += store.search_by_attr(
            model_name=model_name, base_model=base, model_type=model_type, model_format=model_format
        )
    return ModelsList(models=models)


@model_manager_router.get("/i/{key}", operation_id="get_model_record")
def get_model_record(services: Services, key: str = ModelKey) -> AnyModelConfig:
    """One model's config."""
    return services.model_manager.store.get_model(key)


@model_manager_router.patch("/i/{key}", operation_id="update_model_record")
def update_model_record(
    services: Services,
    key: str = ModelKey,
    changes: ModelRecordChanges = Body(description="The fields to change; those left out stay as they are"),
) -> AnyModelConfig:
    """Changes a model's name, description, base, type or default settings."""
    return services.model_manager.store.update_model(key, changes)


@model_manager_router.delete("/i/{key}", operation_id="delete_model", status_code=204)
def delete_model(services: Services, key: str = ModelKey) -> Response:
    """Removes the model; its files too if installing copied them into the models folder."""
    services.model_manager.install.delete(key)
    return Response(status_code=204)


@model_manager_router.post("/install", operation_id="install_model", status_code=201)
def install_model(
    services: Services,
    source: str = Query(description="The absolute path, on the server, of a model file or folder"),
    inplace: bool = Query(default=True, description="Use the model where it is, rather than copying it"),
    config: ModelRecordChanges | None = Body(
        default=None, description="Fields that override what probing found, such as name, base and type"
    ),
) -> AnyModelConfig:
    """Probes the model at `source` and installs it."""
    return services.model_manager.install.install_path(_absolute(source), config, inplace=inplace)


@model_manager_router.post("/scan_folder", operation_id="scan_folder")
def scan_folder(
    services: Services,
    scan_path: str = Query(description="The absolute path, on the server, of a folder to install the models of"),
) -> ScanFolderResult:
    """Installs in place every model under the folder; reports what it skipped and why."""
    return services.model_manager.install.scan_folder(_absolute(scan_path))


@model_manager_router.get("/stats", operation_id="get_stats")
def get_stats(services: Services) -> CacheStats:
    """The model cache's figures since the server started."""
    return services.model_manager.load.get_stats()


@model_manager_router.post("/empty_model_cache", operation_id="empty_model_cache")
def empty_model_cache(services: Services) -> EmptyModelCacheResult:
    """Drops every cached model not in use."""
    return services.model_manager.load.empty_cache()
