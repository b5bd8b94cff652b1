"""The one shape an image name may have, and the error for any other."""

from __future__ import annotations

import re
from typing import TypeGuard

from nodeloom.errors import NodeloomError

UUID4_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
"""A version-4 UUID as `str(uuid.uuid4())` writes it: lowercase, hyphenated."""

IMAGE_EXTENSION = ".png"

# fullmatch, never match with `$`: `$` also matches before a trailing newline.
_IMAGE_NAME = re.compile(UUID4_PATTERN + re.escape(IMAGE_EXTENSION))


class InvalidImageNameError(NodeloomError):
    """That is not an image name: image names are a UUID followed by .png."""

    def __init__(self, name: object) -> None:
        super().__init__(f"{name!r} is not an image name: image names are a lowercase UUID4 followed by .png")
        self.name = name


def is_image_name(name: object) -> TypeGuard[str]:
    """Whether `name` has the shape of the names this application generates, and no other."""
    return isinstance(name, str) and _IMAGE_NAME.fullmatch(name) is not None


def validate_image_name(name: object) -> str:
    """`name` if it is an image name; raises `InvalidImageNameError` for anything else.

    Only names this application generates pass, so no separator, parent reference, NUL byte, drive or
    absolute path can ever reach a path join.
    """
    if not is_image_name(name):
        raise InvalidImageNameError(name)
    return name
