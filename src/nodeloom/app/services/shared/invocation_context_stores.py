"""The stores of the node-facing context (`ContextStores`): images, boards, tensors and conditioning, with the
models of `invocation_context_models`.

`InvocationContext` carries one of each, built per invocation from the services and the invocation's data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from nodeloom.app.invocations.mixins import WithBoard, WithMetadata
from nodeloom.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin

if TYPE_CHECKING:
    from PIL.Image import Image

    from nodeloom.app.services.boards.boards_base import BoardServiceABC
    from nodeloom.app.services.boards.boards_common import BoardDTO
    from nodeloom.app.services.images.images_base import ImageServiceABC
    from nodeloom.app.services.images.images_common import ImageDTO, MetadataField
    from nodeloom.app.services.object_serializer.object_serializer_base import ObjectSerializerBase
    from nodeloom.app.services.shared.invocation_context import InvocationContextData
    from nodeloom.app.services.shared.invocation_context_models import ModelsInterface

T = TypeVar("T")


class ImagesInterface:
    """Saves and reads images for one invocation: what it saves records its session and node, and embeds the
    session's graph and workflow and the node's metadata."""

    def __init__(
        self,
        images: ImageServiceABC,
        data: InvocationContextData,
        graph_json: Callable[[], str | None] = lambda: None,
        workflow_json: str | None = None,
    ) -> None:
        self._images = images
        self._data = data
        self._graph_json = graph_json
        self._workflow_json = workflow_json

    def save(
        self,
        image: Image,
        board_id: str | None = None,
        metadata: MetadataField | None = None,
        is_intermediate: bool | None = None,
        image_category: ImageCategory = ImageCategory.GENERAL,
    ) -> ImageDTO:
        """Saves an image the node made.

        `board_id` defaults to the node's `board` input, `metadata` to its `metadata` input (see `mixins`), and
        `is_intermediate` to the node's own flag.
        """
        invocation = self._data.invocation
        if board_id is None and isinstance(invocation, WithBoard) and invocation.board is not None:
            board_id = invocation.board.board_id
        if metadata is None and isinstance(invocation, WithMetadata):
            metadata = invocation.metadata
        return self._images.create(
            image=image,
            image_origin=ResourceOrigin.INTERNAL,
            image_category=image_category,
            session_id=self._data.session_id,
            node_id=invocation.id,
            board_id=board_id,
            is_intermediate=invocation.is_intermediate if is_intermediate is None else is_intermediate,
            metadata=metadata,
            workflow=self._workflow_json,
            graph=self._graph_json(),
        )

    def get_pil(self, image_name: str, mode: str | None = None) -> Image:
        """The image's pixels, converted to `mode` (a Pillow mode such as "RGBA") if given."""
        image = self._images.get_pil_image(image_name)
        return image if mode is None or image.mode == mode else image.convert(mode)

    def get_dto(self, image_name: str) -> ImageDTO:
        """The image's record, URLs and board."""
        return self._images.get_dto(image_name)

    def get_metadata(self, image_name: str) -> MetadataField | None:
        """The metadata embedded in the image, if any."""
        return self._images.get_metadata(image_name)


class BoardsInterface:
    """Creates and reads boards, and puts images on them."""

    def __init__(self, boards: BoardServiceABC) -> None:
        self._boards = boards

    def create(self, board_name: str) -> BoardDTO:
        """Creates an empty board."""
        return self._boards.create(board_name)

    def get_dto(self, board_id: str) -> BoardDTO:
        """The board with its image count and cover."""
        return self._boards.get_dto(board_id)

    def get_all(self) -> list[BoardDTO]:
        """Every board that is not archived."""
        return self._boards.get_all()

    def add_image_to_board(self, board_id: str, image_name: str) -> None:
        """Puts the image on the board, moving it off any other."""
        self._boards.add_image_to_board(board_id, image_name)

    def get_all_image_names_for_board(self, board_id: str) -> list[str]:
        """The names of every image on the board."""
        return self._boards.get_all_image_names_for_board(board_id)


class _StoredObjects(Generic[T]):
    def __init__(self, store: ObjectSerializerBase[T]) -> None:
        self._store = store

    def save(self, obj: T) -> str:
        """Stores the object for a later node; returns the name that node loads it by."""
        return self._store.save(obj)

    def load(self, name: str) -> T:
        """The object an earlier node stored under `name`."""
        return self._store.load(name)


class TensorsInterface(_StoredObjects[Any]):
    """Hands tensors (latents, masks, noise) from node to node by name."""


class ConditioningInterface(_StoredObjects[Any]):
    """Hands conditioning (tensors in dicts, lists and tuples) from node to node by name."""


@dataclass(frozen=True)
class ContextStores:
    """What a node reaches beyond its inputs: images, boards, objects stored for later nodes, and models.

    The engine always provides all of them; a test of nodes that need only some may leave the others out.
    """

    images: ImagesInterface | None = None
    boards: BoardsInterface | None = None
    tensors: TensorsInterface | None = None
    conditioning: ConditioningInterface | None = None
    models: ModelsInterface | None = None
