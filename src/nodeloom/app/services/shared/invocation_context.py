"""The node-facing API: what a node may reach while it runs, and nothing more."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodeloom.app.invocations.baseinvocation import CanceledException
from nodeloom.app.services.events.events_common import InvocationProgressEvent, ProgressImage
from nodeloom.app.services.shared.invocation_context_models import ModelsInterface
from nodeloom.app.services.shared.invocation_context_stores import (
    BoardsInterface,
    ConditioningInterface,
    ContextStores,
    ImagesInterface,
    TensorsInterface,
)
from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    from nodeloom.app.invocations.baseinvocation import BaseInvocation
    from nodeloom.app.services.boards.boards_base import BoardServiceABC
    from nodeloom.app.services.config.config_default import NodeloomConfig
    from nodeloom.app.services.events.events_base import EventServiceBase
    from nodeloom.app.services.images.images_base import ImageServiceABC
    from nodeloom.app.services.model_manager.model_manager_base import ModelManagerServiceBase
    from nodeloom.app.services.object_serializer.object_serializer_base import ObjectSerializerBase
    from nodeloom.app.services.session_queue.session_queue_common import SessionQueueItem

ProgressCallback = Callable[[str, "float | None", "ProgressImage | None"], None]


@dataclass(frozen=True)
class InvocationContextData:
    """Which queue item, session and node the context belongs to."""

    invocation: BaseInvocation
    source_invocation_id: str
    session_id: str
    queue_id: str = "default"
    item_id: int = 0
    batch_id: str = ""


def _ignore_progress(message: str, percentage: float | None, image: ProgressImage | None) -> None:
    return None


def _never_canceled() -> bool:
    return False


@dataclass(frozen=True)
class UtilInterface:
    """Cancellation and progress for long-running nodes."""

    _is_canceled: Callable[[], bool] = _never_canceled
    _on_progress: ProgressCallback = _ignore_progress

    def is_canceled(self) -> bool:
        """True once the session this node runs in has been canceled; a long node should stop then."""
        return self._is_canceled()

    def signal_progress(
        self, message: str, percentage: float | None = None, image: ProgressImage | None = None
    ) -> None:
        """Reports progress (`percentage` from 0 to 1, an optional preview); raises `CanceledException` if the
        session was canceled."""
        if self._is_canceled():
            raise CanceledException()
        self._on_progress(message, percentage, image)


class StoresUnavailableError(NodeloomError):
    """This node needs images or stored objects, which only a server's root folder provides: enqueue the graph on
    a server (`nodeloom serve`, then `nodeloom enqueue`) instead of `nodeloom run`."""


@dataclass(frozen=True)
class InvocationContext:
    """Built for each invocation by the engine. `config` and `stores` are None when a graph runs without services."""

    data: InvocationContextData
    util: UtilInterface = field(default_factory=UtilInterface)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("nodeloom.invocation"))
    config: NodeloomConfig | None = None
    stores: ContextStores | None = None

    def _store(self, name: str) -> Any:
        store = None if self.stores is None else getattr(self.stores, name)
        if store is None:
            raise StoresUnavailableError()
        return store

    @property
    def images(self) -> ImagesInterface:
        images: ImagesInterface = self._store("images")
        return images

    @property
    def boards(self) -> BoardsInterface:
        boards: BoardsInterface = self._store("boards")
        return boards

    @property
    def tensors(self) -> TensorsInterface:
        tensors: TensorsInterface = self._store("tensors")
        return tensors

    @property
    def conditioning(self) -> ConditioningInterface:
        conditioning: ConditioningInterface = self._store("conditioning")
        return conditioning

    @property
    def models(self) -> ModelsInterface:
        models: ModelsInterface = self._store("models")
        return models


class InvocationContextBuilder:
    """Makes each node's context from the services a node may reach (and no others)."""

    def __init__(
        self,
        events: EventServiceBase,
        config: NodeloomConfig,
        images: ImageServiceABC,
        boards: BoardServiceABC,
        tensors: ObjectSerializerBase[Any],
        conditioning: ObjectSerializerBase[Any],
        model_manager: ModelManagerServiceBase,
    ) -> None:
        self._events = events
        self._config = config
        self._images = images
        self._boards = BoardsInterface(boards)
        self._tensors = TensorsInterface(tensors)
        self._conditioning = ConditioningInterface(conditioning)
        self._model_manager = model_manager
        self._logger = logging.getLogger("nodeloom.invocation")
        self._graph_json: tuple[str, str] | None = None

    def _session_graph_json(self, queue_item: SessionQueueItem) -> str:
        """The session's graph as JSON, made once per session and only when a node saves an image."""
        cached = self._graph_json
        if cached is None or cached[0] != queue_item.session_id:
            cached = self._graph_json = (queue_item.session_id, queue_item.session.graph.model_dump_json())
        return cached[1]

    def build(
        self, queue_item: SessionQueueItem, invocation: BaseInvocation, is_canceled: Callable[[], bool]
    ) -> InvocationContext:
        data = InvocationContextData(
            invocation=invocation,
            source_invocation_id=queue_item.session.prepared_source_mapping[invocation.id],
            session_id=queue_item.session_id,
            queue_id=queue_item.queue_id,
            item_id=queue_item.item_id,
            batch_id=queue_item.batch_id,
        )

        def on_progress(message: str, percentage: float | None, image: ProgressImage | None) -> None:
            self._events.dispatch(InvocationProgressEvent.build(queue_item, invocation, message, percentage, image))

        workflow = None if queue_item.workflow is None else json.dumps(queue_item.workflow)
        stores = ContextStores(
            images=ImagesInterface(self._images, data, lambda: self._session_graph_json(queue_item), workflow),
            boards=self._boards,
            tensors=self._tensors,
            conditioning=self._conditioning,
            models=ModelsInterface(self._model_manager, data),
        )
        return InvocationContext(
            data=data,
            util=UtilInterface(is_canceled, on_progress),
            logger=self._logger,
            config=self._config,
            stores=stores,
        )
