"""The part of the node-facing context that reaches models: their configs, and loading them.

Loads are counted in the cache stats of the session the node runs in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.app.invocations.fields import ModelIdentifierField
    from nodeloom.app.services.model_manager.model_manager_base import ModelManagerServiceBase
    from nodeloom.app.services.shared.invocation_context import InvocationContextData
    from nodeloom.backend.model_manager.configs import AnyModelConfig
    from nodeloom.backend.model_manager.load.load_base import LoadedModel
    from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelType, SubModelType


class ModelsInterface:
    """Finds and loads models for one invocation."""

    def __init__(self, model_manager: ModelManagerServiceBase, data: InvocationContextData) -> None:
        self._model_manager = model_manager
        self._data = data

    def load(self, identifier: ModelIdentifierField, submodel_type: SubModelType | None = None) -> LoadedModel:
        """The model, or the part `submodel_type` names (else the identifier's own submodel type), from the cache
        or loaded into it; `with loaded as model:` uses it on the execution device."""
        config = self._model_manager.store.get_model(identifier.key)
        return self._model_manager.load.load_model(
            config, submodel_type or identifier.submodel_type, session_id=self._data.session_id
        )

    def exists(self, key: str) -> bool:
        """Whether a model with that key is installed."""
        return self._model_manager.store.exists(key)

    def get_config(self, key: str) -> AnyModelConfig:
        """The model's config; `UnknownModelError` for an unknown key."""
        return self._model_manager.store.get_model(key)

    def search_by_attrs(
        self, name: str | None = None, base: BaseModelType | None = None, type: ModelType | None = None
    ) -> list[AnyModelConfig]:
        """The models with that name (exactly), base and type; a filter left None matches every model."""
        return self._model_manager.store.search_by_attr(model_name=name, base_model=base, model_type=type)
