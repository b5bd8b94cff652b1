"""Models shared by the invocation cache's base and implementations."""

from __future__ import annotations

from pydantic import BaseModel, Field


class InvocationCacheStatus(BaseModel):
    size: int = Field(description="The number of cached outputs")
    hits: int = Field(description="Lookups that found an output")
    misses: int = Field(description="Lookups that found nothing")
    enabled: bool = Field(description="Whether the cache is used")
    max_size: int = Field(description="The most outputs the cache holds before evicting the least recently used")
