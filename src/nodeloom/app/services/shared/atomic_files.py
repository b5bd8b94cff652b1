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
TEMP_SUFFIX = ".tmp"


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Writes `path` with `write(file)`: into a temporary file in the same folder, fsynced, then renamed.

    A crash or an exception at any point leaves either the old file or the complete new one at `path`,
    never a part of one; an exception also removes the temporary file and propagates.
    """
    # The same folder keeps the rename on one file system, where os.replace is atomic.
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX)
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


def remove_temporary_files(folder: Path, name_prefix: str = "") -> int:
    """Deletes the temporary files that writes cut short by a crash left in `folder`; how many there were.

    Only for a folder no write is under way in (at start-up, before anything runs): a running write's temporary
    file would go too. `name_prefix` keeps to the temporary files of stored names that start with it.
    """
    removed = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(f"{TEMP_PREFIX}{name_prefix}") and name.endswith(TEMP_SUFFIX) and entry.is_file():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed
