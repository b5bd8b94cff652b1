"""The board service: boards with their counts and covers, and the images on them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.app.services.board_records.board_records_common import BoardChanges
    from nodeloom.app.services.boards.boards_common import BoardDTO, DeleteBoardResult
    from nodeloom.app.services.shared.pagination import OffsetPaginatedResults


class BoardServiceABC(ABC):
    """Methods taking a board id raise `BoardRecordNotFoundError` for an unknown one."""

    @abstractmethod
    def create(self, board_name: str) -> BoardDTO:
        """Creates an empty board."""

    @abstractmethod
    def get_dto(self, board_id: str) -> BoardDTO:
        """The board with its image count and cover."""

    @abstractmethod
    def update(self, board_id: str, changes: BoardChanges) -> BoardDTO:
        """Renames, archives or unarchives the board."""

    @abstractmethod
    def delete(self, board_id: str, delete_images: bool = False) -> DeleteBoardResult:
        """Deletes the board; its images stay, on no board, unless `delete_images` is True."""

    @abstractmethod
    def get_many(
        self, offset: int = 0, limit: int = 10, include_archived: bool = False
    ) -> OffsetPaginatedResults[BoardDTO]:
        """A page of boards, newest first."""

    @abstractmethod
    def get_all(self, include_archived: bool = False) -> list[BoardDTO]:
        """Every board, newest first."""

    @abstractmethod
    def add_image_to_board(self, board_id: str, image_name: str) -> None:
        """Puts the image on the board, moving it off any other."""

    @abstractmethod
    def remove_image_from_board(self, image_name: str) -> None:
        """Takes the image off its board, if it is on one."""

    @abstractmethod
    def get_all_image_names_for_board(self, board_id: str) -> list[str]:
        """The names of every image on the board, in the gallery's order."""
