"""The model manager over HTTP, with InvokeAI's paths, operation ids and shapes.

Installs are jobs: `POST /install` answers the job at once (a path outside the install roots, missing, or a source
of no known kind is refused then, with a 4xx); the job's events and `GET /install/{id}` tell how it goes. Paths name
files on the server, so they must be absolute: the server's working folder is not the client's.
"""

from __future__ import annotations

from pathlib import PurePath

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import BaseModel, Field

from nodeloom.app.api.dependencies import Services
from nodeloom.app.services.model_install.model_install_common import (
    FoundModel,
    ModelInstallJob,
    OrphanedModelInfo,
    RelativeModelPathError,
)
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.backend.model_manager.configs import AnyModelConfig
from nodeloom.backend.model_manager.load.cache_stats import CacheStats, EmptyModelCacheResult
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelFormat, ModelType

model_manager_router = APIRouter(prefix="/v2/models", tags=["model_manager"])

ModelKey = Path(description="The key of the model")
JobId = Path(description="The id of the install job")


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
    """Changes a model's name, description, base, type, default settings, prediction type or config folder (inside
    the install roots, as at install)."""
    return services.model_manager.install.update(key, changes)


@model_manager_router.delete("/i/{key}", operation_id="delete_model", status_code=204)
def delete_model(services: Services, key: str = ModelKey) -> Response:
    """Removes the model; its files too if installing copied them into the models folder."""
    services.model_manager.install.delete(key)
    return Response(status_code=204)


@model_manager_router.get("/missing", operation_id="list_missing_models")
def list_missing_models(services: Services) -> ModelsList:
    """The installed models whose files are gone from disk."""
    return ModelsList(models=services.model_manager.install.list_missing())


@model_manager_router.get("/sync/orphaned", operation_id="get_orphaned_models")
def get_orphaned_models(services: Services) -> list[OrphanedModelInfo]:
    """The models in the models folder that are not installed."""
    return services.model_manager.install.list_orphaned()


@model_manager_router.get("/scan_folder", operation_id="scan_for_models")
def scan_for_models(
    services: Services,
    scan_path: str = Query(description="The absolute path, on the server, of a folder to look for models in"),
) -> list[FoundModel]:
    """The models under the folder, each saying whether it is installed; installs nothing."""
    return services.model_manager.install.scan_folder(_absolute(scan_path))


@model_manager_router.post("/install", operation_id="install_model", status_code=201)
def install_model(
    services: Services,
    source: str = Query(
        description="What to install: an absolute path on the server, an http(s) URL, or a Hugging Face repo id "
        "(owner/name, owner/name:fp16, owner/name:fp16:subfolder, owner/name::subfolder)"
    ),
    inplace: bool = Query(default=True, description="Use a local model where it is, rather than copying it"),
    access_token: str | None = Query(default=None, description="A token for the URL or the Hugging Face repo"),
    config: ModelRecordChanges | None = Body(
        default=None, description="Fields that override what probing finds, such as name, base and type"
    ),
) -> ModelInstallJob:
    """Starts installing the model and answers its job; the job downloads, probes and records it in the
    background."""
    return services.model_manager.install.heuristic_import(source, config, access_token=access_token, inplace=inplace)


@model_manager_router.get("/install", operation_id="list_model_installs")
def list_model_installs(services: Services) -> list[ModelInstallJob]:
    """Every install job since the server started or the last prune."""
    return services.model_manager.install.list_jobs()


@model_manager_router.delete("/install", operation_id="prune_model_install_jobs", status_code=204)
def prune_model_install_jobs(services: Services) -> Response:
    """Forgets the jobs that have ended: completed, failed or cancelled."""
    services.model_manager.install.prune_jobs()
    return Response(status_code=204)


@model_manager_router.get("/install/{id}", operation_id="get_model_install_job")
def get_model_install_job(services: Services, id: int = JobId) -> ModelInstallJob:
    """The install job as it stands."""
    return services.model_manager.install.get_job_by_id(id)


@model_manager_router.delete("/install/{id}", operation_id="cancel_model_install_job", status_code=201)
def cancel_model_install_job(services: Services, id: int = JobId) -> ModelInstallJob:
    """Cancels a waiting, downloading or paused job; what it downloaded is removed."""
    return services.model_manager.install.cancel_job(id)


@model_manager_router.post("/install/{id}/pause", operation_id="pause_model_install_job", status_code=201)
def pause_model_install_job(services: Services, id: int = JobId) -> ModelInstallJob:
    """Pauses a URL or repo job that is waiting or downloading, keeping what it downloaded."""
    return services.model_manager.install.pause_job(id)


@model_manager_router.post("/install/{id}/resume", operation_id="resume_model_install_job", status_code=201)
def resume_model_install_job(services: Services, id: int = JobId) -> ModelInstallJob:
    """Resumes a paused job where its downloads stopped."""
    return services.model_manager.install.resume_job(id)


@model_manager_router.post(
    "/install/{id}/restart_failed", operation_id="restart_failed_model_install_job", status_code=201
)
def restart_failed_model_install_job(services: Services, id: int = JobId) -> ModelInstallJob:
    """Runs a failed job again from the start."""
    return services.model_manager.install.restart_failed(id)


@model_manager_router.get("/stats", operation_id="get_stats")
def get_stats(services: Services) -> CacheStats:
    """The model cache's figures since the server started."""
    return services.model_manager.load.get_stats()


@model_manager_router.post("/empty_model_cache", operation_id="empty_model_cache")
def empty_model_cache(services: Services) -> EmptyModelCacheResult:
    """Drops every cached model not in use."""
    return services.model_manager.load.empty_cache()
