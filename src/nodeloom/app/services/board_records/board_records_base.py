"""Stores board records."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.app.services.board_records.board_records_common import BoardChanges, BoardRecord
    from nodeloom.app.services.shared.pagination import OffsetPaginatedResults


class BoardRecordStorageBase(ABC):
    """One record per board; methods taking a board id raise `BoardRecordNotFoundError` for an unknown one."""

    @abstractmethod
    def save(self, board_name: str) -> BoardRecord:
        """Creates a board and returns its record."""

    @abstractmethod
    def get(self, board_id: str) -> BoardRecord:
        """The board's record."""

    @abstractmethod
    def update(self, board_id: str, changes: BoardChanges) -> BoardRecord:
        """Applies the changes and returns the record as it now is."""

    @abstractmethod
    def delete(self, board_id: str) -> None:
        """Removes the board and its image links; never the images."""

    @abstractmethod
    def get_many(
        self, offset: int = 0, limit: int = 10, include_archived: bool = False
    ) -> OffsetPaginatedResults[BoardRecord]:
        """A page of boards, newest first."""

    @abstractmethod
    def get_all(self, include_archived: bool = False) -> list[BoardRecord]:
        """Every board, newest first."""
