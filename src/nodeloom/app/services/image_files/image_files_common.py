"""What image files embed, and the errors of the image file store."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from nodeloom.errors import NodeloomError


class EmbeddedText(StrEnum):
    """The PNG text chunks an image carries, by key: JSON text written when the image is saved.

    The keys are InvokeAI's, where InvokeAI, its UI and common metadata readers look for how an image was made.
    """

    metadata = "invokeai_metadata"
    """The metadata of the node that made the image (its generation parameters)."""
    workflow = "invokeai_workflow"
    """The workflow the session was enqueued with."""
    graph = "invokeai_graph"
    """The graph of the session that made the image."""

    @property
    def former_key(self) -> str:
        """The key this text had in images written before nodeloom used InvokeAI's keys; still read."""
        return f"nodeloom_{self.name}"


def embedded_texts(info: Mapping[Any, object]) -> dict[EmbeddedText, str]:
    """The embedded texts among a PNG's text chunks (Pillow's `image.info`), under either key."""
    texts: dict[EmbeddedText, str] = {}
    for key in EmbeddedText:
        text = info.get(key.value, info.get(key.former_key))
        if isinstance(text, str):
            texts[key] = text
    return texts


class ImageFileError(NodeloomError):
    """The image file store failed."""


class ImageFileNotFoundError(ImageFileError):
    """No image file has that name."""

    def __init__(self, image_name: str) -> None:
        super().__init__(f"Image file '{image_name}' not found")
        self.image_name = image_name


class ImageFileSaveError(ImageFileError):
    """The image file could not be saved."""
