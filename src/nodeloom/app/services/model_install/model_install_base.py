"""Installs models found on disk."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from nodeloom.app.services.model_install.model_install_common import ScanFolderResult
    from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
    from nodeloom.backend.model_manager.configs import AnyModelConfig


class ModelInstallServiceBase(ABC):
    """Probes what a path holds and records it as a model."""

    @abstractmethod
    def install_path(
        self, path: Path | str, config_overrides: ModelRecordChanges | None = None, inplace: bool = True
    ) -> AnyModelConfig:
        """Records the model at `path`, referenced where it is, or copied into the models folder with
        `inplace=False`; `config_overrides` replace what probing decided. Raises `InvalidModelError` saying what
        is there when it is no model, and `DuplicateModelError` when it is installed already."""

    @abstractmethod
    def scan_folder(self, path: Path | str) -> ScanFolderResult:
        """Installs in place every model under the folder; reports what it installed, and what it skipped and why."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Removes the model's record, and its files too when an install copied them into the models folder."""
