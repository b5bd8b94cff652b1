"""The model load service: the registered loader for each kind of model, and one cache for them all."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nodeloom.app.services.events.events_common import ModelLoadCompleteEvent, ModelLoadStartedEvent
from nodeloom.app.services.model_load.model_load_base import ModelLoadServiceBase
from nodeloom.backend.model_manager.errors import ModelLoadError
from nodeloom.backend.model_manager.load.load_base import LoadedModel

if TYPE_CHECKING:
    from pathlib import Path

    from nodeloom.app.services.events.events_base import EventServiceBase
    from nodeloom.backend.model_manager.configs import AnyModelConfig
    from nodeloom.backend.model_manager.load.cache_stats import (
        CacheStats,
        EmptyModelCacheResult,
        ModelCacheStatsSummary,
    )
    from nodeloom.backend.model_manager.load.model_cache import ModelCache
    from nodeloom.backend.model_manager.load.model_loader_registry import ModelLoaderRegistry
    from nodeloom.backend.model_manager.taxonomy import SubModelType


class ModelLoadService(ModelLoadServiceBase):
    """Loads with the loader `registry` gives for each config into `cache`; a load from disk (a cache miss) is
    announced by `model_load_started` and `model_load_complete` events. A config's relative path is read from
    `models_path`.
    """

    def __init__(
        self, *, registry: ModelLoaderRegistry, cache: ModelCache, events: EventServiceBase, models_path: Path
    ) -> None:
        self._registry = registry
        self._cache = cache
        self._events = events
        self._models_path = models_path

    def load_model(
        self, config: AnyModelConfig, submodel_type: SubModelType | None = None, *, session_id: str | None = None
    ) -> LoadedModel:
        loader_class = self._registry.get_implementation(config)
        key = config.key if submodel_type is None else f"{config.key}:{submodel_type.value}"
        record = self._cache.get(key, session_id)
        if record is None:
            path = self._models_path / config.path
            if not path.exists():
                raise ModelLoadError(f"The files of the model '{config.name}' are gone from {path}: install it again")
            announced: dict[str, Any] = {
                "config": config.model_dump(mode="json"),
                "submodel_type": None if submodel_type is None else submodel_type.value,
            }
            self._events.dispatch(ModelLoadStartedEvent(**announced))
            model = loader_class().load_model(config, path, submodel_type, self._cache.execution_device.dtype)
            record = self._cache.put(key, model, session_id)
            self._events.dispatch(ModelLoadCompleteEvent(**announced))
        return LoadedModel(config, record, self._cache)

    def get_stats(self) -> CacheStats:
        return self._cache.stats()

    def get_session_stats(self, session_id: str) -> ModelCacheStatsSummary:
        return self._cache.session_stats(session_id)

    def empty_cache(self) -> EmptyModelCacheResult:
        return self._cache.empty()
