"""The model cache's figures: since the server started, for one session, and what emptying it dropped."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field


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


@dataclass
class ModelCacheStatsSummary:
    """The model cache's figures for a session, part of its invocation stats; all 0 when there is no model cache.

    Sizes are in GiB (2**30 bytes) under the name "gb", as InvokeAI reports them.
    """

    cache_hits: int = 0
    cache_misses: int = 0
    high_water_mark_gb: float = 0.0
    cache_size_gb: float = 0.0
    """The cache's size budget."""
    total_usage_gb: float = 0.0
    """The RAM taken by the models the session loaded."""
    models_cached: int = 0
    models_cleared: int = 0
