"""What a board's images add up to."""

from __future__ import annotations

from pydantic import BaseModel, Field


class BoardImageSummary(BaseModel):
    """A board's image count and cover, counting the images a gallery shows: not the intermediate ones."""

    board_id: str = Field(description="The id of the board")
    image_count: int = Field(description="The number of images on the board")
    cover_image_name: str | None = Field(description="The newest image on the board, if it has one")
