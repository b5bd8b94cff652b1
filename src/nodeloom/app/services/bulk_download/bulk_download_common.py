"""The names of bulk download archives, and the errors of bulk downloads."""

from __future__ import annotations

import re
import uuid

from nodeloom.app.services.names.names_common import UUID4_PATTERN
from nodeloom.errors import NodeloomError

DEFAULT_BULK_DOWNLOAD_ID = "default"
"""The id of every bulk download, and so the socket.io room of their events, as in InvokeAI."""

ARCHIVE_EXTENSION = ".zip"

# fullmatch, never match with `$`: `$` also matches before a trailing newline.
_ARCHIVE_NAME = re.compile(UUID4_PATTERN + re.escape(ARCHIVE_EXTENSION))


class BulkDownloadError(NodeloomError):
    """The bulk download failed."""


class BulkDownloadParametersError(BulkDownloadError):
    """A bulk download needs image names or a board id."""

    def __init__(self) -> None:
        super().__init__("A bulk download needs image names or a board id")


class InvalidBulkDownloadNameError(BulkDownloadError):
    """That is not the name of a bulk download archive: those are a UUID followed by .zip."""

    def __init__(self, name: object) -> None:
        super().__init__(f"{name!r} is not a bulk download name: those are a lowercase UUID4 followed by .zip")
        self.name = name


class BulkDownloadNotFoundError(BulkDownloadError):
    """No archive of that name is ready: it is still being made, it failed, or it was fetched or expired."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Bulk download '{name}' not found: still being made, failed, already fetched or expired")
        self.name = name


class BulkDownloadBusyError(BulkDownloadError):
    """As many bulk downloads as allowed are being made or wait to be fetched."""


class BulkDownloadTooLargeError(BulkDownloadError):
    """The bulk download asks for more images than one archive may hold."""


class BulkDownloadStoppedError(BulkDownloadError):
    """The server stopped before the archive was made."""


def new_archive_name() -> str:
    """A fresh archive name: a UUID4 and `.zip`."""
    return f"{uuid.uuid4()}{ARCHIVE_EXTENSION}"


def validate_archive_name(name: object) -> str:
    """`name` if it is an archive name; raises `InvalidBulkDownloadNameError` for anything else.

    Only names this application generates pass, so no separator, parent reference or absolute path can ever reach a
    path join.
    """
    if not isinstance(name, str) or _ARCHIVE_NAME.fullmatch(name) is None:
        raise InvalidBulkDownloadNameError(name)
    return name
