"""Bulk downloads: a zip of images made in the background, fetched once by its name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


class BulkDownloadBase(ABC):
    """Every method taking an archive name raises `InvalidBulkDownloadNameError` for a name of the wrong shape."""

    @abstractmethod
    def start(self) -> None:
        """Removes the archives a previous run left, before any job runs."""

    @abstractmethod
    def stop(self, timeout_s: float | None = None) -> None:
        """Ends the job under way (it fails: `bulk_download_error`) within `timeout_s`; removes every archive."""

    @abstractmethod
    def download(self, image_names: list[str] | None, board_id: str | None) -> str:
        """Starts zipping the named images, or a board's ('none': those on no board); the archive's name, at once.

        Raises `BulkDownloadParametersError` without either, `InvalidImageNameError` for a name of another shape,
        `BoardRecordNotFoundError` for an unknown board. The job
        emits `bulk_download_started`, then `bulk_download_complete` once the archive can be fetched, or
        `bulk_download_error` (an unknown image fails it).
        """

    @abstractmethod
    def get_path(self, archive_name: str) -> Path:
        """The archive's file; raises `BulkDownloadNotFoundError` if it is not ready (or no longer there)."""

    @abstractmethod
    def delete(self, archive_name: str) -> None:
        """Removes the archive, if it is there."""
