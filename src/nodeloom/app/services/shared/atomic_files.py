"""Files that appear whole or not at all, for the services that store images and objects on disk."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = "."
"""Temporary files start with a dot, so no listing of stored names ever mistakes one for a stored file."""


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Writes `path` with `write(file)`: into a temporary file in the same folder, fsynced, then renamed.

    A crash or an exception at any point leaves either the old file or the complete new one at `path`,
    never a part of one; an exception also removes the temporary file and propagates.
    """
    # The same folder keeps the rename on one file system, where os.replace is atomic.
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
