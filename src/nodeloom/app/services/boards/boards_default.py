"""The board service over board records, board-image links and the image service."""

from __future__ import annotations

from nodeloom.app.services.board_image_records.board_image_records_base import BoardImageRecordStorageBase
from nodeloom.app.services.board_records.board_records_base import BoardRecordStorageBase
from nodeloom.app.services.board_records.board_records_common import BoardChanges, BoardRecord
from nodeloom.app.services.boards.boards_base import BoardServiceABC
from nodeloom.app.services.boards.boards_common import BoardDTO, DeleteBoardResult
from nodeloom.app.services.images.images_base import ImageServiceABC
from nodeloom.app.services.names.names_common import validate_image_name
from nodeloom.app.services.shared.pagination import OffsetPaginatedResults


class BoardService(BoardServiceABC):
    """Needs the image service only to delete a board's images with it, files included."""

    def __init__(
        self,
        board_records: BoardRecordStorageBase,
        board_image_records: BoardImageRecordStorageBase,
        images: ImageServiceABC,
    ) -> None:
        self._records = board_records
        self._board_images = board_image_records
        self._images = images

    def create(self, board_name: str) -> BoardDTO:
        return self._to_dtos([self._records.save(board_name)])[0]

    def get_dto(self, board_id: str) -> BoardDTO:
        return self._to_dtos([self._records.get(board_id)])[0]

    def update(self, board_id: str, changes: BoardChanges) -> BoardDTO:
        return self._to_dtos([self._records.update(board_id, changes)])[0]

    def delete(self, board_id: str, delete_images: bool = False) -> DeleteBoardResult:
        # Looked up first, so that an unknown board fails before any image is touched.
        self._records.get(board_id)
        image_names = self._board_images.get_all_board_image_names_for_board(board_id)
        deleted_images = self._images.delete_many(image_names) if delete_images else []
        self._records.delete(board_id)
        return DeleteBoardResult(board_id=board_id, deleted_board_images=image_names, deleted_images=deleted_images)

    def get_many(
        self, offset: int = 0, limit: int = 10, include_archived: bool = False
    ) -> OffsetPaginatedResults[BoardDTO]:
        page = self._records.get_many(offset, limit, include_archived)
        return OffsetPaginatedResults(
            limit=page.limit, offset=page.offset, total=page.total, items=self._to_dtos(page.items)
        )

    def get_all(self, include_archived: bool = False) -> list[BoardDTO]:
        return self._to_dtos(self._records.get_all(include_archived))

    def add_image_to_board(self, board_id: str, image_name: str) -> None:
        self._board_images.add_image_to_board(board_id, validate_image_name(image_name))

    def remove_image_from_board(self, image_name: str) -> None:
        self._board_images.remove_image_from_board(validate_image_name(image_name))

    def get_all_image_names_for_board(self, board_id: str) -> list[str]:
        self._records.get(board_id)
        return self._board_images.get_all_board_image_names_for_board(board_id)

    def _to_dtos(self, records: list[BoardRecord]) -> list[BoardDTO]:
        # One query for the counts and covers of the whole page, not two per board.
        summaries = self._board_images.get_summaries([record.board_id for record in records])
        return [
            BoardDTO(
                **record.model_dump(),
                image_count=summaries[record.board_id].image_count,
                cover_image_name=summaries[record.board_id].cover_image_name,
            )
            for record in records
        ]
