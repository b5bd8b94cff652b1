"""The real image services on a real SQLite file and a real outputs folder, for the image and board tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from nodeloom.app.services.board_image_records.board_image_records_sql import SqlBoardImageRecordStorage
from nodeloom.app.services.board_records.board_records_sql import SqlBoardRecordStorage
from nodeloom.app.services.boards.boards_default import BoardService
from nodeloom.app.services.events.events_common import EventBase
from nodeloom.app.services.events.events_default import InProcessEventService
from nodeloom.app.services.image_files.image_files_disk import DiskImageFileStorage
from nodeloom.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from nodeloom.app.services.image_records.image_records_sql import SqlImageRecordStorage
from nodeloom.app.services.images.images_common import ImageDTO
from nodeloom.app.services.images.images_default import ImageService
from nodeloom.app.services.invocation_services import MIGRATIONS
from nodeloom.app.services.names.names_default import SimpleNameService
from nodeloom.app.services.shared.database.database_sqlite import SqliteDatabase
from nodeloom.app.services.shared.database.migrator import Migrator
from nodeloom.app.services.urls.urls_default import LocalUrlService


@dataclass
class ImageStack:
    root: Path
    db: SqliteDatabase
    events: InProcessEventService
    delivered: list[EventBase]
    image_files: DiskImageFileStorage
    image_records: SqlImageRecordStorage
    board_records: SqlBoardRecordStorage
    board_image_records: SqlBoardImageRecordStorage
    images: ImageService
    boards: BoardService

    @property
    def images_folder(self) -> Path:
        return self.root / "outputs" / "images"

    def create(
        self,
        color: tuple[int, ...] = (200, 30, 60),
        size: tuple[int, int] = (8, 8),
        board_id: str | None = None,
        is_intermediate: bool = False,
        category: ImageCategory = ImageCategory.GENERAL,
    ) -> ImageDTO:
        """A new image of one colour, made by a node."""
        mode = "RGBA" if len(color) == 4 else "RGB"
        return self.images.create(
            Image.new(mode, size, color),
            ResourceOrigin.INTERNAL,
            category,
            board_id=board_id,
            is_intermediate=is_intermediate,
        )

    def files_on_disk(self) -> set[str]:
        """Every file under the outputs folder, relative to it: images, thumbnails and anything left over."""
        outputs = self.root / "outputs"
        return {str(path.relative_to(outputs)) for path in outputs.rglob("*") if path.is_file()}


@contextmanager
def open_image_stack(root: Path) -> Iterator[ImageStack]:
    """Builds the services the way the application wires them; closes the database and stops the bus after."""
    db = SqliteDatabase(root / "nodeloom.db")
    events = InProcessEventService()
    delivered: list[EventBase] = []
    events.subscribe(delivered.append)
    events.start()
    try:
        Migrator(db, MIGRATIONS).run()
        image_files = DiskImageFileStorage(root / "outputs" / "images")
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
        boards = BoardService(board_records=board_records, board_image_records=board_image_records, images=images)
        yield ImageStack(
            root, db, events, delivered, image_files, image_records, board_records, board_image_records, images, boards
        )
    finally:
        events.stop()
        db.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[ImageStack]:
    with open_image_stack(tmp_path) as image_stack:
        yield image_stack
