"""Ties the model records, install and load services together, as InvokeAI's `services.model_manager` does."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.app.services.model_install.model_install_base import ModelInstallServiceBase
    from nodeloom.app.services.model_load.model_load_base import ModelLoadServiceBase
    from nodeloom.app.services.model_records.model_records_base import ModelRecordServiceBase


class ModelManagerServiceBase(ABC):
    """Everything about models: `store` records them, `install` adds them, `load` loads them."""

    @property
    @abstractmethod
    def store(self) -> ModelRecordServiceBase:
        """The model records."""

    @property
    @abstractmethod
    def install(self) -> ModelInstallServiceBase:
        """Installs models from disk."""

    @property
    @abstractmethod
    def load(self) -> ModelLoadServiceBase:
        """Loads models into the model cache."""
