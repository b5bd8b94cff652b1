"""`BatchLimits`: what the queue refuses to enqueue, whoever calls it, and the count of a request's JSON."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import graph_json

from nodeloom.app.invocations.limits import LimitExceededError
from nodeloom.app.services.config.config_default import NodeloomConfig
from nodeloom.app.services.events.events_default import InProcessEventService
from nodeloom.app.services.session_queue.session_queue_common import Batch, BatchLimits
from nodeloom.app.services.session_queue.session_queue_sql import SqlSessionQueue
from nodeloom.app.services.shared.database.database_sqlite import SqliteDatabase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator

LIMITS = BatchLimits(
    max_graph_nodes=3,
    max_batch_items=4,
    max_batch_runs=5,
    max_workflow_kb=1,
    max_batch_timeout_s=60,
    max_string_length=10,
    max_collection_size=6,
    max_image_pixels=100,
)


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SqlSessionQueue]:
    db = SqliteDatabase(tmp_path / "nodeloom.db")
    Migrator(db, MIGRATIONS).run()
    bus = InProcessEventService()
    yield SqlSessionQueue(db=db, events=bus, limits=LIMITS)
    db.close()


def batch(nodes: list[dict[str, Any]] | None = None, **fields: Any) -> Batch:
    graph = graph_json(nodes or [{"id": "s", "type": "string", "value": "hi"}])
    return Batch.model_validate({"graph": graph, **fields})


def items(*values: Any) -> list[list[dict[str, Any]]]:
    return [[{"node_path": "s", "field_name": "value", "items": list(values)}]]


def test_the_limits_are_the_settings_of_the_same_names(tmp_path: Path) -> None:
    config = NodeloomConfig(root=tmp_path, max_graph_nodes=7, max_workflow_kb=9, max_image_pixels=11)
    limits = BatchLimits.from_config(config)
    assert (limits.max_graph_nodes, limits.max_workflow_kb, limits.max_image_pixels) == (7, 9, 11)
    assert limits.max_batch_timeout_s == config.max_batch_timeout_s


@pytest.mark.parametrize(
    ("refused", "setting"),
    [
        (batch([{"id": f"n{i}", "type": "integer"} for i in range(4)]), "max_graph_nodes"),
        (batch(data=items("a", "b", "c", "d", "e")), "max_batch_items"),
        (batch(runs=6), "max_batch_runs"),
        (batch(timeout=61), "max_batch_timeout_s"),
        (batch(workflow={"notes": "x" * 1024}), "max_workflow_kb"),
        (batch([{"id": "s", "type": "string", "value": "x" * 11}]), "max_string_length"),
        (batch(data=items("ok", "x" * 11)), "max_string_length"),
        (batch([{"id": "r", "type": "range", "stop": 7}]), "max_collection_size"),
        (batch([{"id": "b", "type": "blank_image", "width": 11, "height": 10}]), "max_image_pixels"),
    ],
)
def test_a_batch_over_a_limit_enqueues_nothing(queue: SqlSessionQueue, refused: Batch, setting: str) -> None:
    with pytest.raises(LimitExceededError, match=rf"\(setting {setting}\)"):
        queue.enqueue_batch("default", refused, prepend=False)
    assert queue.is_empty("default").is_empty


def test_a_batch_at_every_limit_is_enqueued(queue: SqlSessionQueue) -> None:
    at_limits = batch(data=items("a", "b", "c", "x" * 10), runs=5, timeout=60, workflow={"notes": "x" * 1000})
    assert queue.enqueue_batch("default", at_limits, prepend=False).enqueued == 20


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"batch": 3},
        {"batch": {"graph": [], "data": "x"}},
        {"batch": {"graph": {"nodes": []}, "data": [3, [4, {"items": 5}], [{"items": [1]}]]}},
    ],
)
def test_a_body_of_another_shape_is_left_to_validation(body: Any) -> None:
    LIMITS.check_json(body)


def test_the_counts_of_a_requests_json() -> None:
    nodes: dict[str, dict[str, Any]] = {f"n{i}": {} for i in range(4)}
    with pytest.raises(LimitExceededError, match="nodes in the graph is 4"):
        LIMITS.check_json({"batch": {"graph": {"nodes": nodes}}})
    data = [[{"items": [1, 2]}, {"items": [3, 4]}], [{"items": [5]}]]
    with pytest.raises(LimitExceededError, match="batch data items is 5"):
        LIMITS.check_json({"batch": {"graph": {"nodes": {}}, "data": data}})
