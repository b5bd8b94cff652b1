"""Stores which board each image is on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.app.services.board_image_records.board_image_records_common import BoardImageSummary
    from nodeloom.app.services.image_records.image_records_common import ImageCategory


class BoardImageRecordStorageBase(ABC):
    """Links between boards and images: an image is on one board at most."""

    @abstractmethod
    def add_image_to_board(self, board_id: str, image_name: str) -> None:
        """Puts the image on the board, taking it off the board it was on."""

    @abstractmethod
    def remove_image_from_board(self, image_name: str) -> bool:
        """Takes the image off its board; False if it was on none."""

    @abstractmethod
    def get_all_board_image_names_for_board(
        self, board_id: str, categories: list[ImageCategory] | None = None, is_intermediate: bool | None = None
    ) -> list[str]:
        """The names of the board's images, in the gallery's order."""

    @abstractmethod
    def get_board_for_image(self, image_name: str) -> str | None:
        """The id of the board the image is on, or None."""

    @abstractmethod
    def get_boards_for_images(self, image_names: list[str]) -> dict[str, str]:
        """The board id of each of the images that is on a board."""

    @abstractmethod
    def get_summaries(self, board_ids: list[str]) -> dict[str, BoardImageSummary]:
        """The image count and cover of each of the boards (boards without images included)."""
