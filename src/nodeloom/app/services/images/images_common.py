"""The image DTO that the API and nodes see, and the start-up consistency report."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from nodeloom.app.services.image_records.image_records_common import ImageRecord

MetadataField = dict[str, Any]
"""A node's metadata: a JSON object without a fixed schema, embedded in the image it saved."""


class ImageDTO(ImageRecord):
    """An image record with what a client needs to show it: its URLs and its board."""

    image_url: str = Field(description="The URL of the full image")
    thumbnail_url: str = Field(description="The URL of the image's thumbnail")
    board_id: str | None = Field(default=None, description="The id of the board the image is on, if any")


class ImageUrlsDTO(BaseModel):
    """Where to fetch an image and its thumbnail (InvokeAI's shape)."""

    image_name: str = Field(description="The unique name of the image")
    image_url: str = Field(description="The URL of the full image")
    thumbnail_url: str = Field(description="The URL of the image's thumbnail")


class ImageConsistencyReport(BaseModel):
    """Records whose file is missing, and image files (or thumbnails) that no record knows."""

    records_without_files: list[str] = Field(description="Names of records whose image file is missing")
    files_without_records: list[str] = Field(
        description="Names of images without a record whose image file or thumbnail is stored"
    )

    @property
    def is_consistent(self) -> bool:
        return not (self.records_without_files or self.files_without_records)


class ImageLeftoversReport(BaseModel):
    """What the start-up cleanup found after a crash, and what it did with it."""

    temporary_files: int = Field(description="Temporary files of writes that never finished: deleted")
    interrupted_images: list[str] = Field(
        description="Images of interrupted items that nothing will use, deleted: every image of a failed item, and "
        "those a requeued item's nodes made that run again"
    )
    quarantined: list[str] = Field(
        description="Names whose image file or thumbnail had no record: both files moved into the quarantine folder"
    )
    records_without_files: list[str] = Field(description="Records whose image file is missing: kept, and logged")
