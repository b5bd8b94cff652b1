"""Whatever is stored reads back (issue 10, defect 2), over HTTP against a live server.

An output that would not survive the trip to JSON and back fails its node instead of being stored; a row that
cannot be read anyway (stored by an older nodeloom, a node pack gone, a hand-edited database) fails alone:
listings leave it out, its own routes name it, and the processor fails it and goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.app.api.queue_api_helpers import ADD_GRAPH, enqueue, wait
from tests.conftest import LiveServer
from tests.helpers import graph_json


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1/queue/default", timeout=30) as c:
        yield c


def wait_finished(client: httpx.Client, batch_id: str) -> dict[str, Any]:
    result = wait(client, batch_id)
    assert result["finished"], result
    return result


def item_ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    body = response.json()
    return [item["item_id"] for item in (body["items"] if isinstance(body, dict) else body)]


def assert_everything_reads(client: httpx.Client, ids: list[int]) -> None:
    assert item_ids(client.get("/list")) == ids
    assert item_ids(client.get("/list_all")) == ids
    assert item_ids(client.post("/items_by_ids", json={"item_ids": ids})) == ids
    for item_id in ids:
        assert client.get(f"/i/{item_id}").status_code == 200


@pytest.mark.parametrize(
    ("node", "error_type", "message"),
    [
        # The defect's own request: 10 ^ 5000 has 5,001 digits.
        (
            {"type": "integer_math", "operation": "EXP", "a": 10, "b": 5000},
            "ValueError",
            "beyond signed 64 bits",
        ),
        # Refused before it is computed: computing it would not end within the test.
        (
            {"type": "integer_math", "operation": "EXP", "a": 10, "b": 10**15},
            "ValueError",
            "beyond signed 64 bits",
        ),
        ({"type": "integer_math", "operation": "MUL", "a": 2**62, "b": 2}, "ValueError", "limited to signed 64 bits"),
        ({"type": "mul", "a": 2**40, "b": 2**40}, "ValueError", "limited to signed 64 bits"),
        ({"type": "div", "a": -(2**63), "b": -1}, "ValueError", "limited to signed 64 bits"),
        ({"type": "float_to_int", "value": 1e300}, "ValueError", "limited to signed 64 bits"),
        ({"type": "float_math", "operation": "MUL", "a": 1e308, "b": 10}, "ValidationError", "finite number"),
        # A node pack's node: the output check is the one place every output passes.
        ({"type": "test_huge_int", "digits": 5000}, "UnstorableOutputError", "does not read back from JSON"),
    ],
)
def test_an_output_that_would_not_read_back_fails_its_node_and_the_queue_stays_readable(
    client: httpx.Client, node: dict[str, Any], error_type: str, message: str
) -> None:
    before = enqueue(client, ADD_GRAPH)["item_ids"]
    result = enqueue(client, graph_json([{"id": "n", **node}]))
    after = enqueue(client, ADD_GRAPH)["item_ids"]

    [outcome] = wait_finished(client, result["batch"]["batch_id"])["items"]
    assert outcome["status"] == "failed"
    assert outcome["error_type"] == error_type
    assert message in outcome["error_message"]
    assert outcome["outputs"] == {}
    assert_everything_reads(client, before + result["item_ids"] + after)


def test_a_float_that_json_cannot_hold_is_refused_at_enqueue(client: httpx.Client) -> None:
    # Python's json writes Infinity, and FastAPI reads it; stored, it would have come back as null.
    graph = graph_json([{"id": "m", "type": "float_math", "operation": "MUL", "a": float("inf"), "b": 2}])
    body = json.dumps({"batch": {"graph": graph}})
    assert "Infinity" in body
    response = client.post("/enqueue_batch", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "finite number" in response.text
    assert client.get("/list_all").json() == []


def corrupt(server: LiveServer, item_id: int, column: str, value: str) -> None:
    with server.services.database.transaction() as cursor:
        cursor.execute(f"UPDATE session_queue SET {column} = ? WHERE item_id = ?", (value, item_id))


def stored_session(server: LiveServer, item_id: int) -> str:
    with server.services.database.read() as cursor:
        cursor.execute("SELECT session FROM session_queue WHERE item_id = ?", (item_id,))
        row = cursor.fetchone()
        assert row is not None
        session: str = row["session"]
    return session


@pytest.mark.parametrize(
    "damage",
    [
        # What the defect stored: a number of more digits than JSON parsers read.
        lambda session: ("session", session.replace('"b":100', '"b":' + "9" * 5000)),
        lambda session: ("session", '{"graph": 42}'),
        lambda session: ("field_values", "[not json"),
    ],
    ids=["huge-number", "not-a-session", "bad-field-values"],
)
def test_an_unreadable_row_fails_alone(server: LiveServer, client: httpx.Client, damage: Any) -> None:
    client.put("/processor/pause")
    result = enqueue(client, ADD_GRAPH, data=[[{"node_path": "a", "field_name": "value", "items": [1, 2, 3]}]])
    first, bad, last = result["item_ids"]
    corrupt(server, bad, *damage(stored_session(server, bad)))

    # Every listing answers, for every other item.
    assert item_ids(client.get("/list")) == [first, last]
    assert item_ids(client.get("/list_all")) == [first, last]
    assert item_ids(client.post("/items_by_ids", json={"item_ids": [first, bad, last]})) == [first, last]
    # The item's own routes name it, and blame no request.
    response = client.get(f"/i/{bad}")
    assert response.status_code == 409, response.text
    assert response.json()["error_type"] == "SessionQueueItemUnreadableError"
    assert f"Queue item {bad} is stored but cannot be read" in response.json()["detail"]
    assert client.get(f"/i/{bad}/stats").status_code == 404  # no stats yet, as for any item that has not run

    # The processor fails it when its turn comes and runs the others.
    client.put("/processor/resume")
    waited = wait_finished(client, result["batch"]["batch_id"])
    outcomes = [(item["item_id"], item["status"]) for item in waited["items"]]
    assert outcomes == [(first, "completed"), (last, "completed")]
    status = client.get(f"/b/{result['batch']['batch_id']}/status").json()
    assert (status["completed"], status["failed"]) == (2, 1)

    assert client.delete(f"/i/{bad}").status_code == 200
    assert client.get(f"/i/{bad}").status_code == 404
    assert_everything_reads(client, [first, last])


def test_an_unreadable_item_can_be_canceled_but_not_from_another_queue(
    server: LiveServer, client: httpx.Client
) -> None:
    client.put("/processor/pause")
    [bad] = enqueue(client, ADD_GRAPH)["item_ids"]
    corrupt(server, bad, "session", "not json")

    elsewhere = client.put(f"{server.url}/api/v1/queue/other/i/{bad}/cancel")
    assert elsewhere.status_code == 404 and "not in queue 'other'" in elsewhere.json()["detail"]
    canceled = client.put(f"/i/{bad}/cancel")
    # Canceled, though the answer (the item) cannot be read.
    assert canceled.status_code == 409 and f"Queue item {bad}" in canceled.json()["detail"]
    assert client.get("/status").json()["queue"]["canceled"] == 1


def test_pages_skip_unreadable_rows_and_stay_full(server: LiveServer, client: httpx.Client) -> None:
    client.put("/processor/pause")
    ids = enqueue(client, ADD_GRAPH, runs=6)["item_ids"]
    for bad in ids[1:4]:
        corrupt(server, bad, "session", "not json")

    first = client.get("/list", params={"limit": 2}).json()
    assert [item["item_id"] for item in first["items"]] == [ids[0], ids[4]] and first["has_more"]
    second = client.get("/list", params={"limit": 2, "cursor": ids[4], "priority": 0}).json()
    assert [item["item_id"] for item in second["items"]] == [ids[5]] and not second["has_more"]
    # A page that starts with unreadable rows is filled from the rows after them.
    after_first = client.get("/list", params={"limit": 1, "cursor": ids[0], "priority": 0}).json()
    assert [item["item_id"] for item in after_first["items"]] == [ids[4]] and after_first["has_more"]
