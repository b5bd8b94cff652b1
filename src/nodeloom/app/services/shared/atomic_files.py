"""Files that appear whole or not at all, for the services that store images and objects on disk, and that no
start-up cleanup takes from a live writer.

A writer holds its file locked (`flock`) from the moment its temporary file exists until it is done with it, the
record written after the file included (`written_atomically`); the lock ends with the writer's process, however it
ends. So a cleanup in another process tells what a crash left (`abandoned`: no lock) from a write under way,
whatever their ages. A folder shared between machines must support these locks, as NFSv4 does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
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
    with written_atomically(path, write):
        pass


@contextlib.contextmanager
def written_atomically(path: Path, write: Callable[[BinaryIO], object]) -> Iterator[None]:
    """Writes `path` as `write_atomically` does, and holds it locked until the block ends: what the writer does
    next with the file (its record) is part of the write, which no cleanup takes for a crash's leftover."""
    temp_name, file = _locked_temporary_file(path)
    with file:
        try:
            write(file)
            file.flush()
            os.fsync(file.fileno())
            os.replace(temp_name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        yield


def _locked_temporary_file(path: Path) -> tuple[str, BinaryIO]:
    """A new temporary file for `path`, open and locked, and its name."""
    # The same folder keeps the rename on one file system, where os.replace is atomic.
    while True:
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A cleanup may have taken the file between its creation and the lock (it was not locked yet): then the
        # name is gone, and the write starts again with a new one.
        if _names(temp_name, fd):
            return temp_name, os.fdopen(fd, "wb")
        os.close(fd)


def _names(path: str | Path, fd: int) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def abandoned(path: Path) -> Iterator[bool]:
    """Whether `path` is a file that no live writer holds (`written_atomically`): one a crash left. Held so until the
    block ends, for the caller to move or delete it; False when a writer holds it or there is no such file."""
    try:
        fd = os.open(path, os.O_RDWR)  # NFS locks an exclusive lock only on a file open for writing
    except (FileNotFoundError, IsADirectoryError, PermissionError):  # gone, or not a file this process wrote
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            free = False
        else:
            # Renamed meanwhile by a writer that is done with it: `path`, if it is still there, is another file.
            free = _names(path, fd)
        yield free
    finally:
        os.close(fd)


def remove_temporary_files(folder: Path, name_prefix: str = "") -> int:
    """Deletes the temporary files that writes cut short by a crash left in `folder`; how many there were.

    Writes under way, in this process or another, keep theirs (`abandoned`). `name_prefix` keeps to the temporary
    files of stored names that start with it.
    """
    removed = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(f"{TEMP_PREFIX}{name_prefix}") and name.endswith(TEMP_SUFFIX) and entry.is_file():
                with abandoned(Path(entry.path)) as left:
                    if left:
                        os.unlink(entry.path)
                        removed += 1
    return removed
