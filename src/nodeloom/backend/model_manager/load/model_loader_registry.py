"""Which loader loads which kind of model: loaders register for a (base, type, format) with a decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from nodeloom.backend.model_manager.errors import DuplicateModelLoaderError, ModelLoaderNotFoundError
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelFormat, ModelType

if TYPE_CHECKING:
    from nodeloom.backend.model_manager.configs import AnyModelConfig
    from nodeloom.backend.model_manager.load.load_base import ModelLoaderBase

LoaderClass = TypeVar("LoaderClass", bound="type[ModelLoaderBase]")


class ModelLoaderRegistry:
    """Loader classes by (base, type, format). A loader registered with the base `any` loads that type and format
    for every base that has no loader of its own. A second loader for the same triple is refused.

    `model_loaders.loader_registry` holds the built-in loaders; a fresh registry can be made for a test.
    """

    def __init__(self) -> None:
        self._loaders: dict[tuple[BaseModelType, ModelType, ModelFormat], type[ModelLoaderBase]] = {}

    def register(
        self, *, type: ModelType, format: ModelFormat, base: BaseModelType = BaseModelType.Any
    ) -> Callable[[LoaderClass], LoaderClass]:
        """A class decorator registering the loader for (base, type, format); it may be stacked."""

        def decorator(loader_class: LoaderClass) -> LoaderClass:
            triple = (base, type, format)
            existing = self._loaders.get(triple)
            if existing is not None:
                raise DuplicateModelLoaderError(
                    f"{loader_class.__name__} cannot register as the loader for {_describe(*triple)}: "
                    f"{existing.__name__} is registered for it already"
                )
            self._loaders[triple] = loader_class
            return loader_class

        return decorator

    def get_implementation(self, config: AnyModelConfig) -> type[ModelLoaderBase]:
        """The loader for the config's base, type and format, else the one for any base with that type and format."""
        loader_class = self._loaders.get((config.base, config.type, config.format)) or self._loaders.get(
            (BaseModelType.Any, config.type, config.format)
        )
        if loader_class is None:
            raise ModelLoaderNotFoundError(
                f"No loader is registered for {_describe(config.base, config.type, config.format)}, "
                f"so the model '{config.name}' cannot be loaded"
            )
        return loader_class


def _describe(base: BaseModelType, type: ModelType, format: ModelFormat) -> str:
    return f"base={base.value}, type={type.value}, format={format.value}"
