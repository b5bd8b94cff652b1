"""What a loader is, and what loading returns: a `LoadedModel` that locks the model on the execution device."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

    import torch

    from nodeloom.backend.model_manager.configs import AnyModelConfig
    from nodeloom.backend.model_manager.load.model_cache import CacheRecord, ModelCache
    from nodeloom.backend.model_manager.taxonomy import SubModelType


class LoadedModel:
    """A model in the cache, with its config. `with loaded as model:` moves the model to the execution device and
    keeps it there, safe from eviction, until the block ends; `model` reaches it without locking it.

    The model is a torch module (a UNet, a text encoder, a VAE), a tokenizer, a scheduler, or a state dict (a
    LoRA's tensors by name), depending on what was loaded.
    """

    def __init__(self, config: AnyModelConfig, record: CacheRecord, cache: ModelCache) -> None:
        self.config = config
        self._record = record
        self._cache = cache

    @property
    def model(self) -> Any:
        """The model, without locking it: it may be evicted, or sit in RAM rather than on the device."""
        return self._record.model

    def __enter__(self) -> Any:
        self._cache.lock(self._record)
        return self._record.model

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._cache.unlock(self._record)


class ModelLoaderBase(ABC):
    """Loads one kind of model, registered for its (base, type, format) on a `ModelLoaderRegistry`.

    A loader holds no state: the registry makes one for each load.
    """

    @abstractmethod
    def load_model(
        self, config: AnyModelConfig, path: Path, submodel_type: SubModelType | None, dtype: torch.dtype
    ) -> Any:
        """The model (or submodel) read from `path` in RAM, in `dtype` where it has weights.

        Raises `SubmodelTypeError` for a submodel the model does not have, and `ModelLoadError` or a subclass
        when the files cannot be loaded.
        """
