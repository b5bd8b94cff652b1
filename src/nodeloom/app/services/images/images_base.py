"""The image service: files, records and board links together, for the API and the nodes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from PIL.Image import Image

    from nodeloom.app.services.image_records.image_records_common import (
        ImageCategory,
        ImageListQuery,
        ImageNamesQuery,
        ImageNamesResult,
        ImageRecord,
        ImageRecordChanges,
        ResourceOrigin,
    )
    from nodeloom.app.services.images.images_common import (
        ImageConsistencyReport,
        ImageDTO,
        ImageLeftoversReport,
        MetadataField,
    )
    from nodeloom.app.services.session_queue.session_queue_common import SessionQueueItem
    from nodeloom.app.services.shared.pagination import OffsetPaginatedResults


class ImageServiceABC(ABC):
    """Every method taking an image name raises `InvalidImageNameError` for a name of the wrong shape."""

    @abstractmethod
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
        """Stores the image (file, thumbnail, record, board link) and emits `ImageCreatedEvent`."""

    @abstractmethod
    def update(self, image_name: str, changes: ImageRecordChanges) -> ImageDTO:
        """Stars, recategorises or (un)flags the image as intermediate."""

    @abstractmethod
    def get_pil_image(self, image_name: str) -> Image:
        """The image's pixels."""

    @abstractmethod
    def get_record(self, image_name: str) -> ImageRecord:
        """The image's record."""

    @abstractmethod
    def get_dto(self, image_name: str) -> ImageDTO:
        """The image's record with its URLs and board."""

    @abstractmethod
    def get_metadata(self, image_name: str) -> MetadataField | None:
        """The metadata embedded in the image, if any."""

    @abstractmethod
    def get_workflow(self, image_name: str) -> str | None:
        """The workflow embedded in the image (JSON), if any."""

    @abstractmethod
    def get_graph(self, image_name: str) -> str | None:
        """The graph embedded in the image (JSON), if any."""

    @abstractmethod
    def get_path(self, image_name: str, thumbnail: bool = False) -> Path:
        """The file of the image or of its thumbnail, for serving it."""

    @abstractmethod
    def get_many(self, query: ImageListQuery) -> OffsetPaginatedResults[ImageDTO]:
        """A page of the images `query` selects, starred first, newest first."""

    @abstractmethod
    def get_image_names(self, query: ImageNamesQuery) -> ImageNamesResult:
        """The names of every image the query selects, in its order (InvokeAI's gallery lists names, then DTOs)."""

    @abstractmethod
    def delete(self, image_name: str) -> None:
        """Removes the record, board link, file and thumbnail; raises `ImageRecordNotFoundError` if none existed."""

    @abstractmethod
    def delete_many(self, image_names: list[str]) -> list[str]:
        """Removes each image as `delete` does; returns the names of those that existed."""

    @abstractmethod
    def delete_intermediates(self) -> int:
        """Removes every intermediate image; returns how many."""

    @abstractmethod
    def get_intermediates_count(self) -> int:
        """The number of intermediate images."""

    @abstractmethod
    def check_consistency(self) -> ImageConsistencyReport:
        """Compares the records with the files on disk."""

    @abstractmethod
    def remove_interrupted_images(self, interrupted: Sequence[SessionQueueItem]) -> list[str]:
        """Deletes the images of interrupted items that nothing will use (a failed item's, and a requeued item's
        made by nodes its saved session has not recorded, which run again); their names."""

    @abstractmethod
    def remove_leftovers(self, interrupted: Sequence[SessionQueueItem]) -> ImageLeftoversReport:
        """Clears what a crash left, at start-up before anything runs; `interrupted`: the items it recovered.

        Deletes temporary files and the images of the interrupted items that nothing will use
        (`remove_interrupted_images`), and moves files without a record into the quarantine. Keeps records
        without files. Logs what it did.
        """
