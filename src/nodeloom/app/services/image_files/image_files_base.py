"""Stores image files and their thumbnails."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from PIL.Image import Image

    from nodeloom.app.services.image_files.image_files_common import EmbeddedText


class ImageFileStorageBase(ABC):
    """Full images with their embedded text, and a thumbnail of each; every name is validated first."""

    @abstractmethod
    def save(
        self,
        image: Image,
        image_name: str,
        metadata: str | None = None,
        workflow: str | None = None,
        graph: str | None = None,
    ) -> None:
        """Writes the image with the given JSON texts embedded, and its thumbnail, each file atomically."""

    @abstractmethod
    def get(self, image_name: str) -> Image:
        """The image, loaded; raises `ImageFileNotFoundError` if there is no such file."""

    @abstractmethod
    def get_text(self, image_name: str, key: EmbeddedText) -> str | None:
        """The text embedded in the image under `key`, or None if it has none."""

    @abstractmethod
    def get_path(self, image_name: str, thumbnail: bool = False) -> Path:
        """Where the image (or its thumbnail) is stored, whether or not it exists."""

    @abstractmethod
    def delete(self, image_name: str) -> bool:
        """Removes the image and its thumbnail; False if neither existed."""

    @abstractmethod
    def list_names(self) -> set[str]:
        """The names of every full image stored."""

    @abstractmethod
    def list_thumbnail_names(self) -> set[str]:
        """The names of every image whose thumbnail is stored, whether or not the image itself is."""

    @abstractmethod
    def remove_temporary_files(self) -> int:
        """Deletes what writes cut short by a crash left behind; how many. At start-up, before anything runs."""

    @abstractmethod
    def quarantine(self, image_name: str) -> None:
        """Moves the image and its thumbnail, those of them that exist, out of the store into its quarantine."""
