"""Loads models into the model cache."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.backend.model_manager.configs import AnyModelConfig
    from nodeloom.backend.model_manager.load.cache_stats import (
        CacheStats,
        EmptyModelCacheResult,
        ModelCacheStatsSummary,
    )
    from nodeloom.backend.model_manager.load.load_base import LoadedModel
    from nodeloom.backend.model_manager.taxonomy import SubModelType


class ModelLoadServiceBase(ABC):
    """The one way to load a model: through the loader registered for its kind, into the cache."""

    @abstractmethod
    def load_model(
        self, config: AnyModelConfig, submodel_type: SubModelType | None = None, *, session_id: str | None = None
    ) -> LoadedModel:
        """The model (or one part of a main model), from the cache or loaded into it; `session_id` counts the load
        in that session's cache stats."""

    @abstractmethod
    def get_stats(self) -> CacheStats:
        """The cache's figures since the server started."""

    @abstractmethod
    def get_session_stats(self, session_id: str) -> ModelCacheStatsSummary:
        """The cache's figures for one session's loads."""

    @abstractmethod
    def empty_cache(self) -> EmptyModelCacheResult:
        """Drops every cached model not in use."""
