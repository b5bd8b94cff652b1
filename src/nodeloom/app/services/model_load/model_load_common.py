"""What the model load service reports (the cache's figures), and the errors of loading a model."""

from __future__ import annotations

from pydantic import BaseModel, Field

from nodeloom.errors import NodeloomError


class CacheStats(BaseModel):
    """The model cache's figures since the server started, with InvokeAI's names; sizes in bytes."""

    hits: int = Field(description="Loads served from the cache")
    misses: int = Field(description="Loads that read a model from disk")
    high_watermark: int = Field(description="The most RAM the cached models have taken at once")
    in_cache: int = Field(description="How many models are cached now")
    cleared: int = Field(description="How many models were dropped to make room")
    cache_size: int = Field(description="The cache's RAM budget")
    loaded_model_sizes: dict[str, int] = Field(description="The size of each cached model, by cache key")


class EmptyModelCacheResult(BaseModel):
    """What emptying the model cache dropped; models in use stay."""

    models_cleared: int = Field(description="How many models were dropped")
    bytes_freed: int = Field(description="The RAM they took")


class ModelLoadError(NodeloomError):
    """The model could not be loaded."""


class ModelLoaderNotFoundError(ModelLoadError, NotImplementedError):
    """No loader is registered for this kind of model."""


class DuplicateModelLoaderError(NodeloomError):
    """A loader is registered for this kind of model already."""


class CheckpointNotSupportedError(ModelLoadError):
    """Single-file checkpoints cannot be loaded yet; convert it to a diffusers folder."""


class SubmodelTypeError(ModelLoadError):
    """The submodel asked for does not fit the model."""


class ModelFileError(ModelLoadError):
    """The file is not a model file that can be read."""


class UnsafeModelFileError(ModelFileError):
    """The file holds Python objects beyond tensors, and loading them could run code: it is refused."""
