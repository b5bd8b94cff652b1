"""The image service: one image is a file, a thumbnail, a record and maybe a board link, kept together."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL.Image import Image

from nodeloom.app.services.board_image_records.board_image_records_base import BoardImageRecordStorageBase
from nodeloom.app.services.events.events_base import EventServiceBase
from nodeloom.app.services.events.events_common import ImageCreatedEvent
from nodeloom.app.services.image_files.image_files_base import ImageFileStorageBase
from nodeloom.app.services.image_files.image_files_common import EmbeddedText
from nodeloom.app.services.image_records.image_records_base import ImageRecordStorageBase
from nodeloom.app.services.image_records.image_records_common import (
    BOARD_ID_NONE,
    ImageCategory,
    ImageListQuery,
    ImageNamesQuery,
    ImageNamesResult,
    ImageRecord,
    ImageRecordChanges,
    ImageRecordNotFoundError,
    ResourceOrigin,
)
from nodeloom.app.services.images.images_base import ImageServiceABC
from nodeloom.app.services.images.images_common import (
    ImageConsistencyReport,
    ImageDTO,
    ImageLeftoversReport,
    MetadataField,
)
from nodeloom.app.services.names.names_base import NameServiceBase
from nodeloom.app.services.names.names_common import validate_image_name
from nodeloom.app.services.session_queue.session_queue_common import SessionQueueItem
from nodeloom.app.services.shared.database.database_base import DatabaseBase
from nodeloom.app.services.shared.pagination import OffsetPaginatedResults
from nodeloom.app.services.urls.urls_base import UrlServiceBase

logger = logging.getLogger(__name__)

# The event carries the DTO's fields of the same names; its timestamp is its own.
_CREATED_EVENT_FIELDS = set(ImageCreatedEvent.model_fields) - {"timestamp"}


class ImageService(ImageServiceABC):
    """Writes files before records and removes records before files.

    So a record never points at a file that was not written whole, and a crash between the two steps leaves at
    worst a file without a record, which `remove_leftovers` moves aside at the next start; until its record is
    written, a file is held as its writer's (`saving`), so that no start-up in another process takes it for a
    crash's leftover meanwhile. `db` is the database
    the record services use: a record and its board link are written in one transaction.
    """

    def __init__(
        self,
        db: DatabaseBase,
        image_files: ImageFileStorageBase,
        image_records: ImageRecordStorageBase,
        board_image_records: BoardImageRecordStorageBase,
        urls: UrlServiceBase,
        names: NameServiceBase,
        events: EventServiceBase,
    ) -> None:
        self._db = db
        self._files = image_files
        self._records = image_records
        self._board_images = board_image_records
        self._urls = urls
        self._names = names
        self._events = events

    def create(
        self,
        image: Image,
        image_origin: ResourceOrigin,
        image_category: ImageCategory,
        session_id: str | None = None,
        node_id: str | None = None,
        board_id: str | None = None,
        is_intermediate: bool = False,
        metadata: MetadataField | None = None,
        workflow: str | None = None,
        graph: str | None = None,
    ) -> ImageDTO:
        image_origin = ResourceOrigin(image_origin)
        image_category = ImageCategory(image_category)
        # Encoded before anything is written, so metadata that is not JSON fails without leaving a trace.
        metadata_json = None if metadata is None else json.dumps(metadata)
        image_name = self._names.create_image_name()
        with self._files.saving(image, image_name, metadata=metadata_json, workflow=workflow, graph=graph):
            try:
                with self._db.transaction():
                    record = self._records.save(
                        image_name=image_name,
                        image_origin=image_origin,
                        image_category=image_category,
                        width=image.width,
                        height=image.height,
                        has_workflow=workflow is not None,
                        is_intermediate=is_intermediate,
                        session_id=session_id,
                        node_id=node_id,
                    )
                    if board_id is not None:
                        self._board_images.add_image_to_board(board_id, image_name)
            except BaseException:
                self._files.delete(image_name)
                raise
        dto = self._to_dto(record, board_id)
        self._events.dispatch(ImageCreatedEvent(**dto.model_dump(include=_CREATED_EVENT_FIELDS, mode="json")))
        return dto

    def update(self, image_name: str, changes: ImageRecordChanges) -> ImageDTO:
        validate_image_name(image_name)
        record = self._records.update(image_name, changes)
        return self._to_dto(record, self._board_images.get_board_for_image(image_name))

    def get_pil_image(self, image_name: str) -> Image:
        return self._files.get(image_name)

    def get_record(self, image_name: str) -> ImageRecord:
        validate_image_name(image_name)
        return self._records.get(image_name)

    def get_dto(self, image_name: str) -> ImageDTO:
        record = self.get_record(image_name)
        return self._to_dto(record, self._board_images.get_board_for_image(image_name))

    def get_metadata(self, image_name: str) -> MetadataField | None:
        text = self._files.get_text(image_name, EmbeddedText.metadata)
        if text is None:
            return None
        metadata = json.loads(text)
        # Only this service embeds metadata, always as an object; anything else is not ours to hand on.
        return metadata if isinstance(metadata, dict) else None

    def get_workflow(self, image_name: str) -> str | None:
        return self._files.get_text(image_name, EmbeddedText.workflow)

    def get_graph(self, image_name: str) -> str | None:
        return self._files.get_text(image_name, EmbeddedText.graph)

    def get_path(self, image_name: str, thumbnail: bool = False) -> Path:
        return self._files.get_path(image_name, thumbnail)

    def get_many(self, query: ImageListQuery) -> OffsetPaginatedResults[ImageDTO]:
        page = self._records.get_many(query)
        names = [record.image_name for record in page.items]
        boards: Mapping[str, str | None]
        if query.board_id is None:
            boards = self._board_images.get_boards_for_images(names)
        else:
            # A page filtered by board holds that board's images only (or, for "none", images on no board).
            boards = dict.fromkeys(names, None if query.board_id == BOARD_ID_NONE else query.board_id)
        return OffsetPaginatedResults(
            limit=page.limit,
            offset=page.offset,
            total=page.total,
            items=[self._to_dto(record, boards.get(record.image_name)) for record in page.items],
        )

    def get_image_names(self, query: ImageNamesQuery) -> ImageNamesResult:
        return self._records.get_image_names(query)

    def delete(self, image_name: str) -> None:
        validate_image_name(image_name)
        had_record = self._records.delete(image_name)
        had_file = self._files.delete(image_name)
        if not (had_record or had_file):
            raise ImageRecordNotFoundError(image_name)

    def delete_many(self, image_names: list[str]) -> list[str]:
        for image_name in image_names:
            validate_image_name(image_name)
        with_records = set(self._records.delete_many(image_names))
        with_files = {image_name for image_name in image_names if self._files.delete(image_name)}
        return [image_name for image_name in image_names if image_name in with_records or image_name in with_files]

    def delete_intermediates(self) -> int:
        with self._db.transaction():
            image_names = self._records.get_intermediates()
            self._records.delete_many(image_names)
        for image_name in image_names:
            self._files.delete(image_name)
        return len(image_names)

    def get_intermediates_count(self) -> int:
        return len(self._records.get_intermediates())

    def check_consistency(self) -> ImageConsistencyReport:
        records = self._records.get_all_names()
        files = self._files.list_names()
        thumbnails = self._files.list_thumbnail_names()
        return ImageConsistencyReport(
            records_without_files=sorted(records - files),
            files_without_records=sorted((files | thumbnails) - records),
        )

    def remove_interrupted_images(self, interrupted: Sequence[SessionQueueItem]) -> list[str]:
        unused: list[str] = []
        for item in interrupted:
            # A requeued item resumes from its saved session: the images of the nodes recorded there are part of
            # its results, and any other node runs again and saves its image again. A failed item's images
            # belong to a run that produced nothing.
            kept = item.session.executed if item.status == "pending" else set()
            records = self._records.get_by_session(item.session_id)
            unused += [record.image_name for record in records if record.node_id not in kept]
        self.delete_many(unused)
        return unused

    def remove_leftovers(self, interrupted: Sequence[SessionQueueItem]) -> ImageLeftoversReport:
        temporary_files = self._files.remove_temporary_files()
        unused = self.remove_interrupted_images(interrupted)
        consistency = self.check_consistency()
        quarantined: list[str] = []
        for image_name in consistency.files_without_records:
            with self._files.abandoned(image_name) as left:
                # Read again once held: a live writer may have recorded it since the records were listed.
                if left and not self._has_record(image_name):
                    self._files.quarantine(image_name)
                    quarantined.append(image_name)
        report = ImageLeftoversReport(
            temporary_files=temporary_files,
            interrupted_images=unused,
            quarantined=quarantined,
            records_without_files=consistency.records_without_files,
        )
        if temporary_files or unused or report.quarantined:
            logger.warning(
                "Cleared what a crash left: %d temporary file(s) deleted, %d image(s) of %d interrupted item(s) "
                "deleted, %d image(s) without a record moved into the quarantine folder",
                temporary_files,
                len(unused),
                len(interrupted),
                len(report.quarantined),
            )
            logger.debug("Deleted %s; quarantined %s", unused, report.quarantined)
        if report.records_without_files:
            # Kept: a missing file is far more often an outputs folder not mounted or moved than a lost image,
            # and deleting the records would lose the gallery (boards, stars, metadata) for good.
            logger.error(
                "%d image record(s) without their file, kept (is the outputs folder complete?): %s",
                len(report.records_without_files),
                report.records_without_files,
            )
        return report

    def _has_record(self, image_name: str) -> bool:
        try:
            self._records.get(image_name)
        except ImageRecordNotFoundError:
            return False
        return True

    def _to_dto(self, record: ImageRecord, board_id: str | None) -> ImageDTO:
        return ImageDTO(
            **record.model_dump(),
            image_url=self._urls.get_image_url(record.image_name),
            thumbnail_url=self._urls.get_image_url(record.image_name, thumbnail=True),
            board_id=board_id,
        )
