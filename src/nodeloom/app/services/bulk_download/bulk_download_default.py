"""Bulk downloads as zip files in a folder of their own under the outputs folder, made on one worker thread."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import threading
import time
import zipfile
from pathlib import Path
from typing import BinaryIO

from nodeloom.app.services.boards.boards_base import BoardServiceABC
from nodeloom.app.services.bulk_download.bulk_download_base import BulkDownloadBase
from nodeloom.app.services.bulk_download.bulk_download_common import (
    ARCHIVE_EXTENSION,
    DEFAULT_BULK_DOWNLOAD_ID,
    BulkDownloadBusyError,
    BulkDownloadNotFoundError,
    BulkDownloadParametersError,
    BulkDownloadStoppedError,
    BulkDownloadTooLargeError,
    InvalidBulkDownloadNameError,
    new_archive_name,
    validate_archive_name,
)
from nodeloom.app.services.events.events_base import EventServiceBase
from nodeloom.app.services.events.events_common import (
    BulkDownloadCompleteEvent,
    BulkDownloadErrorEvent,
    BulkDownloadStartedEvent,
)
from nodeloom.app.services.image_files.image_files_common import ImageFileNotFoundError
from nodeloom.app.services.image_records.image_records_common import BOARD_ID_NONE, ImageNamesQuery, ImageRecord
from nodeloom.app.services.images.images_base import ImageServiceABC
from nodeloom.app.services.names.names_common import validate_image_name
from nodeloom.app.services.shared.atomic_files import Hold, abandoned, write_held
from nodeloom.errors import NodeloomError

logger = logging.getLogger(__name__)


class ZipBulkDownloadService(BulkDownloadBase):
    """Archives as `{folder}/{uuid4}.zip`, each holding its images' PNGs as `{category}/{image_name}` (InvokeAI's
    layout), written atomically, so an archive is fetchable whole or not at all.

    Jobs run one at a time, in order, on one thread. An archive is removed once fetched, `max_age_s` after it was
    made if it never is, and when the service stops. The service holds its archives (`write_held`) until then, so
    that the start-up of another service on the same folder, which removes what no live process holds (what a crash
    left), leaves them, as it leaves the archives being written: the folder holds nothing that outlives the process
    that made it. At most
    `max_archives` archives are queued, being made or waiting to be fetched, each of at most `max_images` images,
    so neither the queue of jobs nor the folder grows without bound.
    """

    def __init__(
        self,
        folder: Path,
        images: ImageServiceABC,
        boards: BoardServiceABC,
        events: EventServiceBase,
        max_age_s: float,
        max_archives: int,
        max_images: int,
    ) -> None:
        self._folder = folder.resolve()
        self._folder.mkdir(parents=True, exist_ok=True)
        self._images = images
        self._boards = boards
        self._events = events
        self._max_age_s = max_age_s
        self._max_archives = max_archives
        self._max_images = max_images
        self._stopping = threading.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="nodeloom-zip")
        self._jobs: dict[concurrent.futures.Future[None], str] = {}
        """The jobs queued or running, with the name of the archive each makes."""
        self._held: dict[str, Hold] = {}
        """The archives this service made, by name, until they are removed."""
        self._jobs_lock = threading.Lock()

    def start(self) -> None:
        self._remove_unheld()

    def stop(self, timeout_s: float | None = None) -> None:
        self._stopping.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._jobs_lock:
            jobs = list(self._jobs)
        concurrent.futures.wait(jobs, timeout=timeout_s)
        with self._jobs_lock:
            holds, self._held = list(self._held.values()), {}
        for hold in holds:
            hold.release()
        self._remove_unheld()

    def download(self, image_names: list[str] | None, board_id: str | None) -> str:
        if not image_names and board_id is None:
            raise BulkDownloadParametersError()
        for image_name in image_names or []:
            validate_image_name(image_name)
        if board_id is not None and board_id != BOARD_ID_NONE:
            self._boards.get_dto(board_id)
        if board_id is not None:
            # Read now, so that an archive too large is refused rather than failed later.
            image_names = self._images.get_image_names(ImageNamesQuery(board_id=board_id)).image_names
        if len(image_names or []) > self._max_images:
            raise BulkDownloadTooLargeError(
                f"A bulk download holds at most {self._max_images} images (bulk_download_max_images) and "
                f"{len(image_names or [])} were asked for"
            )
        self._remove_expired()
        archive_name = new_archive_name()
        with self._jobs_lock:
            # By name: a job that has just written its archive is counted once, as its archive.
            held = len(set(self._jobs.values()) | self._archive_names())
            if held >= self._max_archives:
                raise BulkDownloadBusyError(
                    f"{held} bulk downloads are being made or wait to be fetched, the most allowed "
                    f"(bulk_download_max_archives is {self._max_archives}); fetch one, or try again once one "
                    f"expires after bulk_download_max_age_s ({self._max_age_s:g} s)"
                )
            job = self._executor.submit(self._make_archive, archive_name, image_names)
            self._jobs[job] = archive_name
        job.add_done_callback(self._forget)
        return archive_name

    def _archive_names(self) -> set[str]:
        with os.scandir(self._folder) as entries:
            return {entry.name for entry in entries if entry.name.endswith(ARCHIVE_EXTENSION)}

    def _forget(self, job: concurrent.futures.Future[None]) -> None:
        with self._jobs_lock:
            self._jobs.pop(job, None)

    def get_path(self, archive_name: str) -> Path:
        path = self._folder / validate_archive_name(archive_name)
        self._remove_expired()
        # A symbolic link placed in the folder must not lead a valid name out of it.
        if not path.resolve().is_relative_to(self._folder):
            raise InvalidBulkDownloadNameError(archive_name)
        if not path.is_file():
            raise BulkDownloadNotFoundError(archive_name)
        return path

    def delete(self, archive_name: str) -> None:
        (self._folder / validate_archive_name(archive_name)).unlink(missing_ok=True)
        with self._jobs_lock:
            hold = self._held.pop(archive_name, None)
        if hold is not None:
            hold.release()

    def _make_archive(self, archive_name: str, image_names: list[str] | None) -> None:
        ids = {
            "bulk_download_id": DEFAULT_BULK_DOWNLOAD_ID,
            "bulk_download_item_id": archive_name.removesuffix(ARCHIVE_EXTENSION),
            "bulk_download_item_name": archive_name,
        }
        self._events.dispatch(BulkDownloadStartedEvent(**ids))
        try:
            records = [self._images.get_record(image_name) for image_name in image_names or []]
            hold = write_held(self._folder / archive_name, lambda file: self._write_zip(file, records))
            with self._jobs_lock:
                self._held[archive_name] = hold
        except NodeloomError as error:
            self._events.dispatch(BulkDownloadErrorEvent(**ids, error=str(error)))
        except Exception as error:
            # The worker outlives any one job: an unforeseen failure is logged and reported, and the next job runs.
            logger.exception("Bulk download %s failed", archive_name)
            self._events.dispatch(BulkDownloadErrorEvent(**ids, error=f"{type(error).__name__}: {error}"))
        else:
            self._events.dispatch(BulkDownloadCompleteEvent(**ids))

    def _write_zip(self, file: BinaryIO, records: list[ImageRecord]) -> None:
        # Stored, not deflated: PNGs are compressed already, and deflating them again costs time for nothing.
        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED) as archive:
            for record in records:
                if self._stopping.is_set():
                    raise BulkDownloadStoppedError("The server stopped before the archive was made")
                path = self._images.get_path(record.image_name)
                try:
                    archive.write(path, arcname=f"{record.image_category.value}/{record.image_name}")
                except FileNotFoundError:
                    raise ImageFileNotFoundError(record.image_name) from None

    def _files(self) -> list[Path]:
        with os.scandir(self._folder) as entries:
            return [Path(entry.path) for entry in entries if entry.is_file()]

    def _remove_unheld(self) -> None:
        """Removes the files that no live process holds, whatever their ages: the archives and cut-short writes of
        services that crashed, and this one's archives once it has let them go."""
        for path in self._files():
            with abandoned(path) as left:
                if left:
                    path.unlink(missing_ok=True)

    def _remove_expired(self) -> None:
        """Removes the archives made over `max_age_s` ago, whichever service made them, and the files as old that
        no live process holds (a write under way is kept, however long it takes); lets go of this service's
        archives that are gone, fetched or expired through any service."""
        oldest = time.time() - self._max_age_s
        for path in self._files():
            # A fetch may remove an archive while this looks at it.
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime > oldest:
                    continue
                if path.name.endswith(ARCHIVE_EXTENSION):
                    path.unlink()
                    continue
                with abandoned(path) as left:
                    if left:
                        path.unlink()
        with self._jobs_lock:
            gone = {name: hold for name, hold in self._held.items() if not hold.is_current()}
            for name in gone:
                del self._held[name]
        for hold in gone.values():
            hold.release()
