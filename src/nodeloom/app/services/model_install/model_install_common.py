"""What installing models reports: install jobs and their sources, folder scans, models gone from disk or never
installed, and the errors of a source that cannot be installed."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import PurePath
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.backend.model_manager.configs import AnyModelConfig
from nodeloom.backend.model_manager.errors import InvalidModelError
from nodeloom.backend.model_manager.model_files import WEIGHTS_SUFFIXES
from nodeloom.errors import NodeloomError


class InstallStatus(StrEnum):
    """Where an install job stands (InvokeAI's values)."""

    WAITING = "waiting"
    DOWNLOADING = "downloading"
    DOWNLOADS_DONE = "downloads_done"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({InstallStatus.COMPLETED, InstallStatus.ERROR, InstallStatus.CANCELLED})


class ModelRepoVariant(StrEnum):
    """The weights a Hugging Face repo id asks for where its folders hold several precisions."""

    FP16 = "fp16"
    FP32 = "fp32"


class LocalModelSource(BaseModel):
    """A file or folder on the server."""

    path: str = Field(description="The model's absolute path")
    inplace: bool = Field(default=True, description="Use the model where it is, rather than copying it")
    type: Literal["local"] = "local"

    def __str__(self) -> str:
        return self.path


class HFModelSource(BaseModel):
    """A Hugging Face repo, or one folder or file of it."""

    repo_id: str = Field(description="The repo, owner/name")
    variant: ModelRepoVariant | None = Field(
        default=None, description="The precision to download, where the repo has several"
    )
    subfolder: str | None = Field(default=None, description="The folder or file of the repo to install")
    type: Literal["hf"] = "hf"

    def __str__(self) -> str:
        text = self.repo_id
        if self.variant is not None or self.subfolder is not None:
            text += f":{self.variant or ''}"
        if self.subfolder is not None:
            text += f":{self.subfolder}"
        return text


class URLModelSource(BaseModel):
    """One file to download over HTTP(S)."""

    url: str = Field(description="The file's URL")
    type: Literal["url"] = "url"

    def __str__(self) -> str:
        return self.url


ModelSource = Annotated[LocalModelSource | HFModelSource | URLModelSource, Field(discriminator="type")]

_VARIANTS = "|".join(variant.value for variant in ModelRepoVariant)
_REPO_ID = re.compile(rf"^(\w[\w.-]*/\w[\w.-]*)(?::({_VARIANTS})?(?::([^:]+))?|:([^:]+))?$")


def parse_source(source: str, inplace: bool) -> ModelSource:
    """The source a string names: an absolute path on the server, an http(s) URL, or a Hugging Face repo id as
    InvokeAI writes it (`owner/name`, `owner/name:fp16`, `owner/name:fp16:vae`, `owner/name::vae`), where
    `owner/name:vae` is also read as a subfolder."""
    source = source.strip().strip('"')
    if re.match(r"^https?://", source, re.IGNORECASE):
        return URLModelSource(url=source)
    if PurePath(source).is_absolute():
        return LocalModelSource(path=source, inplace=inplace)
    match = _REPO_ID.match(source)
    if match and PurePath(match.group(1)).suffix.lower() not in WEIGHTS_SUFFIXES:
        repo_id, variant, subfolder, lone_subfolder = match.groups()
        return HFModelSource(
            repo_id=repo_id,
            variant=ModelRepoVariant(variant) if variant else None,
            subfolder=(subfolder or lone_subfolder or None),
        )
    # A colon marks a repo id, however wrong; a path has none.
    if ":" not in source and ("/" in source or "\\" in source or source.startswith((".", "~"))):
        raise RelativeModelPathError(
            f"'{source}' is a relative path: send an absolute one, as the server does not share the client's folder"
        )
    raise UnsupportedModelSourceError(
        f"'{source}' is no model source: send an absolute path on the server, an http(s) URL or a Hugging Face "
        "repo id (owner/name, owner/name:fp16, owner/name:fp16:subfolder or owner/name::subfolder)"
    )


class DownloadJobStatus(StrEnum):
    """Where one file's download stands (InvokeAI's values)."""

    WAITING = "waiting"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ERROR = "error"


class DownloadPart(BaseModel):
    """One file an install job downloads, with InvokeAI's `DownloadJob` fields."""

    id: int = Field(description="The file's number within its install job")
    source: str = Field(description="Where the file is downloaded from")
    dest: str = Field(description="Where the file goes while the job runs")
    download_path: str | None = Field(default=None, description="The downloaded file, once complete")
    status: DownloadJobStatus = Field(default=DownloadJobStatus.WAITING, description="Where the download stands")
    bytes: int = Field(default=0, description="Bytes downloaded so far")
    total_bytes: int = Field(default=0, description="The file's size in bytes, 0 while unknown")
    error_type: str | None = Field(default=None, description="The kind of error that ended the download")
    error: str | None = Field(default=None, description="The error that ended the download")


class ModelInstallJob(BaseModel):
    """An install running in the background (InvokeAI's shape); kept in memory until pruned or the server stops."""

    id: int = Field(description="The job's id")
    status: InstallStatus = Field(default=InstallStatus.WAITING, description="Where the job stands")
    error_reason: str | None = Field(default=None, description="The kind of error that failed the job")
    config_in: ModelRecordChanges = Field(
        default_factory=ModelRecordChanges, description="Fields that override what probing finds"
    )
    config_out: AnyModelConfig | None = Field(default=None, description="The installed model's config, once done")
    inplace: bool = Field(default=False, description="Whether a local model is used where it is")
    source: ModelSource = Field(description="Where the model comes from: a local path, a URL or a repo id")
    local_path: str = Field(description="Where the model is on the server: its path, or where it is downloaded to")
    bytes: int = Field(default=0, description="Bytes downloaded so far")
    total_bytes: int = Field(default=0, description="The size of the model in bytes, once known")
    download_parts: list[DownloadPart] = Field(default=[], description="The files downloaded for the model")
    error: str | None = Field(default=None, description="What failed the job")
    error_traceback: str | None = Field(default=None, description="Where it failed")


class FoundModel(BaseModel):
    """A model a folder scan found."""

    path: str = Field(description="The model's path")
    is_installed: bool = Field(description="Whether a model record uses that path")


class OrphanedModelInfo(BaseModel):
    """A model in the models folder that no record uses (InvokeAI's shape)."""

    path: str = Field(description="Its path relative to the models folder")
    absolute_path: str = Field(description="Its absolute path")
    files: list[str] = Field(description="Its files, relative to it")
    size_bytes: int = Field(description="The size of its files in bytes")


class ModelBaseUnknownError(InvalidModelError):
    """The model's base could not be determined: install it again with a base override."""


class ModelSettingUnknownError(InvalidModelError):
    """A setting the model needs could not be told from its files: install it again with an override of it."""


# Raised with no message but this one: naming the path, or saying whether it exists or where it leads, would tell
# a client about the server's files.
class ModelPathNotAllowedError(NodeloomError):
    """Models are installed only from the models folder and the folders in the model_install_roots setting."""


class RelativeModelPathError(NodeloomError):
    """The server was sent a relative path: it needs an absolute one, as it does not share the client's folder."""


class ScanTooLargeError(NodeloomError):
    """The folder holds too many files to scan: scan a narrower folder."""


class UnsupportedModelSourceError(NodeloomError):
    """The source is no absolute path, http(s) URL or Hugging Face repo id."""


class UnknownInstallJobError(NodeloomError):
    """No install job has that id."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"No model install job has the id {job_id}")


class InstallJobStateError(NodeloomError):
    """The install job is not in a state that allows this."""


class ModelDownloadError(NodeloomError):
    """A model's file could not be downloaded."""


class ModelDownloadAddressError(ModelDownloadError):
    """The URL's host has no address that model downloads may reach: set model_download_allow_private to allow
    loopback and private ones."""
