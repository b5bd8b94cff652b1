"""Generic page models for listings: offset pages and cursor pages."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")

MAX_PAGE_SIZE = 10_000
"""The most items one page of a listing may hold."""


class OffsetPaginatedResults(BaseModel, Generic[T]):
    limit: int = Field(description="The most items a page holds")
    offset: int = Field(description="How many items come before this page")
    total: int = Field(description="The number of items in all pages")
    items: list[T] = Field(description="The items of this page")


class CursorPaginatedResults(BaseModel, Generic[T]):
    limit: int = Field(description="The most items a page holds")
    has_more: bool = Field(description="Whether a next page exists")
    items: list[T] = Field(description="The items of this page")
