"""Installs models: from disk at once, and from a path, a URL or a Hugging Face repo as background jobs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from nodeloom.app.services.model_install.model_install_common import (
        FoundModel,
        ModelInstallJob,
        OrphanedModelInfo,
    )
    from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
    from nodeloom.backend.model_manager.configs import AnyModelConfig


class ModelInstallServiceBase(ABC):
    """Probes what a path holds and records it as a model; runs install jobs on worker threads."""

    @abstractmethod
    def start(self) -> None:
        """Removes the downloads a previous run left unfinished; logs the models whose files are gone and those in
        the models folder that are not installed."""

    @abstractmethod
    def stop(self, timeout_s: float | None = None) -> None:
        """Cancels every job not done, waits up to `timeout_s` for those running, removes their downloads."""

    @abstractmethod
    def install_path(
        self, path: Path | str, config_overrides: ModelRecordChanges | None = None, inplace: bool = True
    ) -> AnyModelConfig:
        """Records the model at `path`, referenced where it is, or copied into the models folder with
        `inplace=False`; `config_overrides` replace what probing decided. Raises `InvalidModelError` saying what
        is there when it is no model, and `DuplicateModelError` when it is installed already."""

    @abstractmethod
    def heuristic_import(
        self,
        source: str,
        config: ModelRecordChanges | None = None,
        access_token: str | None = None,
        inplace: bool = True,
    ) -> ModelInstallJob:
        """Starts installing what `source` names (an absolute path, an http(s) URL or a Hugging Face repo id) and
        returns its job at once, or the job already under way for that source. A path is checked now: outside the
        install roots it is `ModelPathNotAllowedError`, missing `ModelPathNotFoundError`."""

    @abstractmethod
    def list_jobs(self) -> list[ModelInstallJob]:
        """Every job since the server started or the last prune, oldest first."""

    @abstractmethod
    def get_job_by_id(self, job_id: int) -> ModelInstallJob:
        """The job as it stands now; `UnknownInstallJobError` for an unknown id."""

    @abstractmethod
    def cancel_job(self, job_id: int) -> ModelInstallJob:
        """Cancels a waiting, downloading or paused job; its downloads are removed."""

    @abstractmethod
    def pause_job(self, job_id: int) -> ModelInstallJob:
        """Stops a waiting or downloading URL or repo job, keeping what it downloaded."""

    @abstractmethod
    def resume_job(self, job_id: int) -> ModelInstallJob:
        """Puts a paused job back in line; its downloads go on where they stopped."""

    @abstractmethod
    def restart_failed(self, job_id: int) -> ModelInstallJob:
        """Runs a failed job again from the start."""

    @abstractmethod
    def prune_jobs(self) -> None:
        """Forgets the jobs that have ended."""

    @abstractmethod
    def scan_folder(self, path: Path | str) -> list[FoundModel]:
        """The models under the folder, in path order, each saying whether it is installed; installs nothing."""

    @abstractmethod
    def list_missing(self) -> list[AnyModelConfig]:
        """The installed models whose files are gone."""

    @abstractmethod
    def list_orphaned(self) -> list[OrphanedModelInfo]:
        """The models in the models folder that no record uses."""

    @abstractmethod
    def update(self, key: str, changes: ModelRecordChanges) -> AnyModelConfig:
        """Changes a model's record; a `config_path` among the changes is checked against the install roots as at
        install."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Removes the model's record, and its files too when an install copied them into the models folder."""
