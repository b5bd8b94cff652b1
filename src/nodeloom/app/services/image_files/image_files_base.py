"""Stores image files and their thumbnails."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path

    from PIL.Image import Image

    from nodeloom.app.services.image_files.image_files_common import EmbeddedText


class ImageFileStorageBase(ABC):
    """Full images with their embedded text, and a thumbnail of each; every name is validated first."""

    @abstractmethod
    def saving(
        self,
        image: Image,
        image_name: str,
        metadata: str | None = None,
        workflow: str | None = None,
        graph: str | None = None,
    ) -> AbstractContextManager[None]:
        """Writes the image with the given JSON texts embedded, and its thumbnail, each file atomically, on entering;
        holds the image as its writer's until the block ends, so that no cleanup takes it for a crash's leftover
        while its record is written in the block (`abandoned`)."""

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
    def abandoned(self, image_name: str) -> AbstractContextManager[bool]:
        """Whether what is stored of the image is a crash's leftover: its file held by no live writer (`saving`), or
        only its thumbnail left. Held so until the block ends, for the caller to check its record and move it."""

    @abstractmethod
    def remove_temporary_files(self) -> int:
        """Deletes what writes cut short by a crash left behind, writes under way in any process kept; how many."""

    @abstractmethod
    def quarantine(self, image_name: str) -> None:
        """Moves the image and its thumbnail, those of them that exist, out of the store into its quarantine."""
