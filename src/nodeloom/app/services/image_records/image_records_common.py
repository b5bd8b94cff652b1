"""Image records: where an image came from, what it is for, and its flags; with their errors."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from nodeloom.app.invocations.limits import INT64_MAX
from nodeloom.app.services.shared.pagination import MAX_PAGE_SIZE
from nodeloom.errors import NodeloomError

BOARD_ID_NONE = "none"
"""The board id that selects the images on no board, as in InvokeAI."""

IMAGE_ORDER = "images.starred DESC, images.created_at DESC, images.image_name DESC"
"""The gallery's order, as SQL: starred first, then newest first; the name breaks ties so offset pages never
overlap. `ix_images_order` serves it, and `ix_images_board_order` within one board (or none) and intermediate flag."""


class ResourceOrigin(StrEnum):
    """Who made an image."""

    INTERNAL = "internal"
    """Made by a node of this application."""
    EXTERNAL = "external"
    """Brought in from outside: an upload."""


class ImageCategory(StrEnum):
    """What an image is for."""

    GENERAL = "general"
    """A generated image, an init image, or any image without a special purpose."""
    MASK = "mask"
    """A mask."""
    CONTROL = "control"
    """A control image (for a ControlNet or a T2I adapter)."""
    USER = "user"
    """An image a user provided."""
    OTHER = "other"
    """Any other special purpose, for custom nodes."""


class ImageRecord(BaseModel):
    """An image's row: everything known about it except its pixels and its embedded texts."""

    image_name: str = Field(description="The unique name of the image")
    image_origin: ResourceOrigin = Field(description="Who made the image")
    image_category: ImageCategory = Field(description="What the image is for")
    width: int = Field(description="The width of the image in pixels")
    height: int = Field(description="The height of the image in pixels")
    session_id: str | None = Field(default=None, description="The session that made the image, if one did")
    node_id: str | None = Field(default=None, description="The node that made the image, if one did")
    is_intermediate: bool = Field(description="Whether the image is an intermediate result, to be cleaned up")
    starred: bool = Field(description="Whether the image is starred")
    has_workflow: bool = Field(description="Whether the image embeds a workflow")
    created_at: str = Field(description="When the image was created (ISO 8601, UTC)")
    updated_at: str = Field(description="When the record last changed (ISO 8601, UTC)")
    deleted_at: str | None = Field(default=None, description="Reserved for soft deletion; always null for now")


class ImageFilter(BaseModel):
    """Which images a listing selects; the filters given all apply."""

    model_config = ConfigDict(frozen=True)

    image_origin: ResourceOrigin | None = Field(default=None, description="Only images of this origin")
    categories: list[ImageCategory] | None = Field(default=None, description="Only images of these categories")
    is_intermediate: bool | None = Field(default=None, description="Only intermediate images, or only others")
    board_id: str | None = Field(default=None, description="Only images on this board; 'none' for those on none")


class ImageOrder(BaseModel):
    """The order of a listing (InvokeAI's parameters): starred images first or not, then newest or oldest first."""

    model_config = ConfigDict(frozen=True)

    order_dir: Literal["ASC", "DESC"] = Field(default="DESC", description="Oldest first (ASC) or newest first (DESC)")
    starred_first: bool = Field(default=True, description="Whether starred images come before the others")


class ImageListQuery(ImageFilter, ImageOrder):
    """Which images a listing selects, and which page of them in the order asked."""

    offset: int = Field(default=0, ge=0, le=INT64_MAX, description="How many images to skip")
    limit: int = Field(default=10, ge=1, le=MAX_PAGE_SIZE, description="The most images to return")


class ImageRecordChanges(BaseModel):
    """The changes an image record accepts; a field left None is left as it is."""

    model_config = ConfigDict(extra="forbid")

    image_category: ImageCategory | None = Field(default=None, description="The image's new category")
    is_intermediate: StrictBool | None = Field(default=None, description="The image's new intermediate flag")
    starred: StrictBool | None = Field(default=None, description="Whether the image is now starred")


class ImageRecordNotFoundError(NodeloomError):
    """No image record has that name."""

    def __init__(self, image_name: str) -> None:
        super().__init__(f"Image '{image_name}' not found")
        self.image_name = image_name


class ImageNamesQuery(ImageFilter, ImageOrder):
    """Which images a list of names selects, and in which order (InvokeAI's `get_image_names` parameters)."""

    search_term: str | None = Field(
        default=None, description="Only images whose name or creation time (ISO 8601) holds this text"
    )


class ImageNamesResult(BaseModel):
    """The names of the images a query selects, in its order, with InvokeAI's counts."""

    image_names: list[str] = Field(description="The names of the images, in order")
    starred_count: int = Field(description="How many of them are starred (0 unless starred images come first)")
    total_count: int = Field(description="How many images the query selects")
