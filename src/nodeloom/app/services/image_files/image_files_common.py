"""What image files embed, and the errors of the image file store."""

from __future__ import annotations

from enum import StrEnum

from nodeloom.errors import NodeloomError


class EmbeddedText(StrEnum):
    """The PNG text chunks an image carries, by key: JSON text written when the image is saved."""

    metadata = "nodeloom_metadata"
    """The metadata of the node that made the image (its generation parameters)."""
    workflow = "nodeloom_workflow"
    """The workflow the session was enqueued with."""
    graph = "nodeloom_graph"
    """The graph of the session that made the image."""


class ImageFileError(NodeloomError):
    """The image file store failed."""


class ImageFileNotFoundError(ImageFileError):
    """No image file has that name."""

    def __init__(self, image_name: str) -> None:
        super().__init__(f"Image file '{image_name}' not found")
        self.image_name = image_name


class ImageFileSaveError(ImageFileError):
    """The image file could not be saved."""
