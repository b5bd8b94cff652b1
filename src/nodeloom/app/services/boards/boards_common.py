"""The board DTO and the result of deleting a board."""

from __future__ import annotations

from pydantic import BaseModel, Field

from nodeloom.app.services.board_records.board_records_common import BoardRecord


class BoardDTO(BoardRecord):
    """A board with its image count and cover, counting the images a gallery shows (not intermediates)."""

    image_count: int = Field(description="The number of images on the board")
    cover_image_name: str | None = Field(description="The newest image on the board, if it has one")


class DeleteBoardResult(BaseModel):
    """What deleting a board removed."""

    board_id: str = Field(description="The id of the deleted board")
    deleted_board_images: list[str] = Field(description="The images that were on the board")
    deleted_images: list[str] = Field(description="The images deleted with the board (none unless asked)")
