"""Files that appear whole or not at all, for the services that store images and objects on disk, and files and
folders that no cleanup in another process takes from a live owner.

A writer holds its file locked (`flock`) from the moment its temporary file exists until it is done with it, the
record written after the file included (`written_atomically`), or for as long as the file is its own to serve
(`write_held`); a folder's owner holds a lock file inside it (`new_held_folder`). A lock ends with its process,
however that ends. So a cleanup in another process tells what a crash left (`abandoned`: no lock) from what a live
process is using, whatever their ages. A folder shared between machines must support these locks, as NFSv4 does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = "."
"""Temporary files start with a dot, so no listing of stored names ever mistakes one for a stored file."""
TEMP_SUFFIX = ".tmp"
HOLD_NAME = f"{TEMP_PREFIX}held{TEMP_SUFFIX}"
"""The lock file of a held folder (`new_held_folder`): its owner keeps the name free for it."""


class Hold:
    """A file that this process holds locked, until `release` or the process's end: what a cleanup in another
    process leaves (`abandoned` is False for it)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def is_current(self) -> bool:
        """Whether `path` still names the held file: not once another process has removed or replaced it."""
        return _names(self.path, self._fd)

    def release(self) -> None:
        os.close(self._fd)


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Writes `path` with `write(file)`: into a temporary file in the same folder, fsynced, then renamed.

    A crash or an exception at any point leaves either the old file or the complete new one at `path`,
    never a part of one; an exception also removes the temporary file and propagates.
    """
    with written_atomically(path, write):
        pass


def write_held(path: Path, write: Callable[[BinaryIO], object]) -> Hold:
    """Writes `path` as `write_atomically` does and keeps it held, from its temporary file on, until the hold is
    released: a file that is its writer's to serve and remove, which a cleanup in another process leaves while the
    writer lives and removes once it has ended (`remove_temporary_files`, `abandoned`)."""
    with written_atomically(path, write) as file:
        # The duplicate shares the write's lock, so the file is never unheld between the write and the hold.
        return Hold(path, os.dup(file.fileno()))


@contextlib.contextmanager
def written_atomically(path: Path, write: Callable[[BinaryIO], object]) -> Iterator[BinaryIO]:
    """Writes `path` as `write_atomically` does, and holds it locked until the block ends: what the writer does
    next with the file (its record) is part of the write, which no cleanup takes for a crash's leftover. The block
    gets the written file, still open."""
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
        yield file


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
    """Whether `path` is a file that no live writer holds (`written_atomically`, `write_held`): one a crash left.
    Held so until the block ends, for the caller to move or delete it; False when a writer holds it or there is no
    such file."""
    with _unheld(path, os.O_RDWR) as free:
        yield free


@contextlib.contextmanager
def _unheld(path: Path, flags: int) -> Iterator[bool]:
    """Whether the file `path`, opened with `flags`, is held by no live process; held so until the block ends."""
    try:
        fd = os.open(path, flags, 0o600)  # NFS locks an exclusive lock only on a file open for writing
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


def new_held_folder(parent: Path, prefix: str) -> tuple[Path, Hold]:
    """A new folder in `parent` (made if need be), named `prefix` and a random part, and the hold on it: a lock
    on its file `HOLD_NAME`, which `remove_unheld_folders` in another process leaves while this process lives."""
    while True:
        parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        lock = folder / HOLD_NAME
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except (FileNotFoundError, FileExistsError):  # a cleanup is taking the folder, not held yet
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A cleanup may have taken the folder between the lock file's creation and its lock: then this one is
        # elsewhere, on its way out, and another folder is made.
        if _names(lock, fd):
            return folder, Hold(lock, fd)
        os.close(fd)


def remove_unheld_folders(parent: Path) -> None:
    """Deletes the folders in `parent` that no live process holds (`new_held_folder`): those their owner released,
    and those a crash left."""
    try:
        with os.scandir(parent) as entries:
            folders = [Path(entry.path) for entry in entries if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return
    for folder in folders:
        try:
            aside = _move_aside_unheld(folder)
        except OSError:  # one this process cannot lock or move (a read-only mount) stays, as a leftover may
            continue
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def _move_aside_unheld(folder: Path) -> Path | None:
    """Where the folder was moved to, for deleting, if no live process holds it; None if one does, or it is gone.

    A folder without its lock file is a crash's, or one whose owner has not held it yet: the lock file made here
    and held makes that owner make another. The folder is moved aside while its lock is held, so an owner-to-be, who
    checks its lock's name once it holds it, never takes a folder on its way out for its own."""
    with _unheld(folder / HOLD_NAME, os.O_RDWR | os.O_CREAT) as free:
        if not free:
            return None
        aside = folder.parent / f"{TEMP_PREFIX}removed-{uuid.uuid4().hex}{TEMP_SUFFIX}"
        try:
            os.rename(folder, aside)
        except FileNotFoundError:  # another cleanup took it first
            return None
        return aside
