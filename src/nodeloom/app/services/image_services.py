"""The image services wired together once, for the composition root, the tests and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nodeloom.app.services.board_image_records.board_image_records_base import BoardImageRecordStorageBase
from nodeloom.app.services.board_image_records.board_image_records_sql import SqlBoardImageRecordStorage
from nodeloom.app.services.board_records.board_records_base import BoardRecordStorageBase
from nodeloom.app.services.board_records.board_records_sql import SqlBoardRecordStorage
from nodeloom.app.services.boards.boards_base import BoardServiceABC
from nodeloom.app.services.boards.boards_default import BoardService
from nodeloom.app.services.events.events_base import EventServiceBase
from nodeloom.app.services.image_files.image_files_base import ImageFileStorageBase
from nodeloom.app.services.image_files.image_files_disk import DiskImageFileStorage
from nodeloom.app.services.image_records.image_records_base import ImageRecordStorageBase
from nodeloom.app.services.image_records.image_records_sql import SqlImageRecordStorage
from nodeloom.app.services.images.images_base import ImageServiceABC
from nodeloom.app.services.images.images_default import ImageService
from nodeloom.app.services.names.names_default import SimpleNameService
from nodeloom.app.services.shared.database.database_base import DatabaseBase
from nodeloom.app.services.urls.urls_default import LocalUrlService


@dataclass(frozen=True)
class ImageServices:
    """The image and board services, with the storages under them that tests and benchmarks reach into."""

    image_files: ImageFileStorageBase
    image_records: ImageRecordStorageBase
    board_records: BoardRecordStorageBase
    board_image_records: BoardImageRecordStorageBase
    images: ImageServiceABC
    boards: BoardServiceABC


def build_image_services(db: DatabaseBase, images_folder: Path, events: EventServiceBase) -> ImageServices:
    """The image services on a migrated database, their files under `images_folder` (`outputs/images`)."""
    image_files = DiskImageFileStorage(images_folder)
    image_records = SqlImageRecordStorage(db)
    board_records = SqlBoardRecordStorage(db)
    board_image_records = SqlBoardImageRecordStorage(db)
    images = ImageService(
        db=db,
        image_files=image_files,
        image_records=image_records,
        board_image_records=board_image_records,
        urls=LocalUrlService(),
        names=SimpleNameService(),
        events=events,
    )
    return ImageServices(
        image_files=image_files,
        image_records=image_records,
        board_records=board_records,
        board_image_records=board_image_records,
        images=images,
        boards=BoardService(board_records, board_image_records, images),
    )
