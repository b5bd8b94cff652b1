"""Stores image records."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.app.services.image_records.image_records_common import (
        ImageCategory,
        ImageListQuery,
        ImageNamesQuery,
        ImageNamesResult,
        ImageRecord,
        ImageRecordChanges,
        ResourceOrigin,
    )
    from nodeloom.app.services.shared.pagination import OffsetPaginatedResults


class ImageRecordStorageBase(ABC):
    """One record per image; `get` and `update` raise `ImageRecordNotFoundError` for an unknown name."""

    @abstractmethod
    def get(self, image_name: str) -> ImageRecord:
        """The image's record."""

    @abstractmethod
    def save(
        self,
        image_name: str,
        image_origin: ResourceOrigin,
        image_category: ImageCategory,
        width: int,
        height: int,
        has_workflow: bool,
        is_intermediate: bool = False,
        starred: bool = False,
        session_id: str | None = None,
        node_id: str | None = None,
    ) -> ImageRecord:
        """Stores a new record and returns it."""

    @abstractmethod
    def update(self, image_name: str, changes: ImageRecordChanges) -> ImageRecord:
        """Applies the changes and returns the record as it now is."""

    @abstractmethod
    def delete(self, image_name: str) -> bool:
        """Removes the record and its board link; False if there was no record."""

    @abstractmethod
    def delete_many(self, image_names: list[str]) -> list[str]:
        """Removes the records that exist among `image_names`; returns their names."""

    @abstractmethod
    def get_intermediates(self) -> list[str]:
        """The names of every intermediate image."""

    @abstractmethod
    def get_all_names(self) -> set[str]:
        """The names of every image with a record."""

    @abstractmethod
    def get_by_session(self, session_id: str) -> list[ImageRecord]:
        """The records of the images the session made."""

    @abstractmethod
    def get_many(self, query: ImageListQuery) -> OffsetPaginatedResults[ImageRecord]:
        """A page of the records `query` selects, starred first, newest first."""

    @abstractmethod
    def get_image_names(self, query: ImageNamesQuery) -> ImageNamesResult:
        """The names of every image the query selects, in its order."""
