"""The real image services on a real SQLite file and a real outputs folder, for the image and board tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from tests.database_engines import OpenDatabase

from nodeloom.app.services.board_image_records.board_image_records_base import BoardImageRecordStorageBase
from nodeloom.app.services.board_records.board_records_base import BoardRecordStorageBase
from nodeloom.app.services.boards.boards_base import BoardServiceABC
from nodeloom.app.services.events.events_common import EventBase
from nodeloom.app.services.events.events_default import InProcessEventService
from nodeloom.app.services.image_files.image_files_base import ImageFileStorageBase
from nodeloom.app.services.image_records.image_records_base import ImageRecordStorageBase
from nodeloom.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from nodeloom.app.services.image_services import build_image_services
from nodeloom.app.services.images.images_base import ImageServiceABC
from nodeloom.app.services.images.images_common import ImageDTO
from nodeloom.app.services.shared.database.database_base import DatabaseBase
from nodeloom.app.services.shared.database.database_sqlite import SqliteDatabase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator


@dataclass
class ImageStack:
    root: Path
    db: DatabaseBase
    events: InProcessEventService
    delivered: list[EventBase]
    image_files: ImageFileStorageBase
    image_records: ImageRecordStorageBase
    board_records: BoardRecordStorageBase
    board_image_records: BoardImageRecordStorageBase
    images: ImageServiceABC
    boards: BoardServiceABC

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
def open_image_stack(root: Path, db: DatabaseBase | None = None) -> Iterator[ImageStack]:
    """The services wired as the application wires them, on `db` (default: a SQLite file in `root`); closes the
    database and stops the bus after."""
    db = db or SqliteDatabase(root / "nodeloom.db")
    events = InProcessEventService()
    delivered: list[EventBase] = []
    events.subscribe(delivered.append)
    events.start()
    try:
        Migrator(db, MIGRATIONS).run()
        parts = build_image_services(db, root / "outputs" / "images", events)
        yield ImageStack(
            root,
            db,
            events,
            delivered,
            parts.image_files,
            parts.image_records,
            parts.board_records,
            parts.board_image_records,
            parts.images,
            parts.boards,
        )
    finally:
        events.stop()
        db.close()


@pytest.fixture
def stack(tmp_path: Path, open_db: OpenDatabase) -> Iterator[ImageStack]:
    with open_image_stack(tmp_path, open_db()) as image_stack:
        yield image_stack
