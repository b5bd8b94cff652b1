"""Stores model configs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
    from nodeloom.backend.model_manager.configs import AnyModelConfig
    from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelFormat, ModelType


class ModelRecordServiceBase(ABC):
    """One config per model; `get_model`, `update_model` and `del_model` raise `UnknownModelError` for an unknown
    key."""

    @abstractmethod
    def add_model(self, config: AnyModelConfig) -> AnyModelConfig:
        """Stores a new config and returns it with its timestamps; `DuplicateModelError` if its key or path is taken."""

    @abstractmethod
    def del_model(self, key: str) -> None:
        """Removes the model's config."""

    @abstractmethod
    def update_model(self, key: str, changes: ModelRecordChanges) -> AnyModelConfig:
        """Applies the changes and returns the config as it now is; `InvalidModelConfigError` when the result is not
        a valid config."""

    @abstractmethod
    def get_model(self, key: str) -> AnyModelConfig:
        """The model's config."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a model has that key."""

    @abstractmethod
    def search_by_path(self, path: str) -> list[AnyModelConfig]:
        """The models stored at that path (as the config writes it): none or one."""

    @abstractmethod
    def search_by_attr(
        self,
        model_name: str | None = None,
        base_model: BaseModelType | None = None,
        model_type: ModelType | None = None,
        model_format: ModelFormat | None = None,
    ) -> list[AnyModelConfig]:
        """The models matching every filter given (the name exactly), by type, base and name; all with no filter."""
