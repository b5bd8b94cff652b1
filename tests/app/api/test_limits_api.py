"""Bounded work per request (issue 10, defect 6), over HTTP against a live server: each limit is a setting, and
a request over one is refused with a 4xx naming it; a value an edge brings fails its node, naming it."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from tests.app.api.socket_listeners import Listeners
from tests.conftest import LiveServer
from tests.helpers import edge, graph_json, wait_for

StartServer = Callable[..., LiveServer]
MB = 1024 * 1024

ONE_NODE = graph_json([{"id": "a", "type": "integer", "value": 1}])


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server with the default limits for the requests that are refused, which change nothing."""
    server = LiveServer(tmp_path_factory.mktemp("limits") / "root").start()
    yield server
    server.stop()


@pytest.fixture
def queue(shared_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{shared_server.url}/api/v1/queue/default", timeout=60) as client:
        yield client
        assert client.get("/list_all").json() == []


def post_json(client: httpx.Client, url: str, body: Any) -> httpx.Response:
    # Python's json, not httpx's: it writes Infinity, as a client may.
    return client.post(url, content=json.dumps(body), headers={"Content-Type": "application/json"})


def assert_refused(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text[:2000]
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, detail


def data(*groups: list[tuple[str, str, list[Any]]]) -> list[list[dict[str, Any]]]:
    return [[{"node_path": n, "field_name": f, "items": items} for n, f, items in group] for group in groups]


# --- At enqueue: the counts, before a value is validated --------------------------------------------------------


def test_a_million_batch_items_are_refused_before_any_is_validated(queue: httpx.Client) -> None:
    # Not one item is a valid batch value: validated, each would be an error of its own. The count comes first.
    items: list[Any] = [{}] * 1_000_000
    response = post_json(queue, "/enqueue_batch", {"batch": {"graph": ONE_NODE, "data": data([("a", "value", items)])}})
    assert_refused(response, 422, "batch data items is 1,000,000", "limit of 10,000", "max_batch_items")


def test_items_are_counted_over_every_datum(queue: httpx.Client) -> None:
    graph = graph_json([{"id": "a", "type": "integer"}, {"id": "b", "type": "integer"}])
    both = data([("a", "value", list(range(6000))), ("b", "value", list(range(6000)))])
    response = post_json(queue, "/enqueue_batch", {"batch": {"graph": graph, "data": both}})
    assert_refused(response, 422, "12,000", "max_batch_items")


def test_a_graph_of_too_many_nodes_is_refused(queue: httpx.Client) -> None:
    # Invalid nodes: validating them would report those instead.
    nodes = {f"n{i}": {"id": f"n{i}", "type": "no_such_type"} for i in range(1001)}
    response = post_json(queue, "/enqueue_batch", {"batch": {"graph": {"nodes": nodes, "edges": []}}})
    assert_refused(response, 422, "nodes in the graph is 1,001", "max_graph_nodes")


# --- At enqueue: the rest of the batch ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch", "words"),
    [
        ({"runs": 10_001}, ["runs is 10,001", "max_batch_runs"]),
        ({"timeout": 1e300}, ["timeout in seconds is 1e+300", "max_batch_timeout_s"]),
        ({"timeout": float("inf")}, ["timeout in seconds is inf", "max_batch_timeout_s"]),
        ({"workflow": {"notes": "x" * (2 * MB + 1)}}, ["size of the workflow in KB", "max_workflow_kb"]),
    ],
    ids=["runs", "timeout", "infinite-timeout", "workflow"],
)
def test_a_batch_over_a_limit_is_refused(queue: httpx.Client, batch: dict[str, Any], words: list[str]) -> None:
    response = post_json(queue, "/enqueue_batch", {"batch": {"graph": ONE_NODE, **batch}})
    assert_refused(response, 422, *words)


def test_the_longest_timeout_allowed_is_scheduled(live_server: StartServer) -> None:
    server = live_server(max_batch_timeout_s=30 * 24 * 3600)
    with httpx.Client(base_url=f"{server.url}/api/v1/queue/default", timeout=30) as client:
        response = post_json(client, "/enqueue_batch", {"batch": {"graph": ONE_NODE, "timeout": 30 * 24 * 3600}})
        assert response.status_code == 200, response.text
        batch_id = response.json()["batch"]["batch_id"]
        [item] = client.get(f"/b/{batch_id}/wait", params={"timeout": 20}).json()["items"]
    assert item["status"] == "completed"


LONG = "x" * 100_001
IMAGE = {"image_name": "never-read.png"}
# Each of 500 matches becomes 999 characters: 500,000 made from inputs of 500 and 999.
GROWING_REPLACE = {"id": "r", "type": "string_replace", "string": "a" * 500, "search_string": "a"}


@pytest.mark.parametrize(
    ("node", "words"),
    [
        ({"type": "string", "value": LONG}, ["text input 'value'", "100,001", "max_string_length"]),
        ({"type": "string_collection", "collection": ["ok", LONG]}, ["text input 'collection'", "max_string_length"]),
        ({"type": "integer_collection", "collection": [1] * 10_001}, ["input 'collection'", "max_collection_size"]),
        ({"type": "range", "start": 0, "stop": 20_001, "step": 2}, ["collection", "10,001", "max_collection_size"]),
        ({"type": "range", "start": 10, "stop": -(2**62), "step": -1}, ["collection", "max_collection_size"]),
        ({"type": "range_of_size", "size": 10_001}, ["collection", "max_collection_size"]),
        ({"type": "random_range", "size": 10**12}, ["collection", "1,000,000,000,000", "max_collection_size"]),
        ({"type": "blank_image", "width": 10_000, "height": 10_000}, ["(10000 x 10000)", "max_image_pixels"]),
        ({"type": "blank_image", "width": 10**2200, "height": 10**2200}, ["a number of", "max_image_pixels"]),
        ({"type": "img_crop", "image": IMAGE, "width": 9000, "height": 9000}, ["max_image_pixels"]),
        ({"type": "img_resize", "image": IMAGE, "width": 65536, "height": 1025}, ["(65536 x 1025)"]),
        ({"type": "noise", "width": 16384, "height": 8192}, ["(16384 x 8192)", "max_image_pixels"]),
    ],
    ids=[
        "string",
        "string-in-list",
        "collection",
        "range",
        "descending-range",
        "range-of-size",
        "random-range",
        "blank-image",
        "blank-image-huge",
        "crop",
        "resize",
        "noise",
    ],
)
def test_a_node_value_over_a_limit_is_refused_at_enqueue(
    queue: httpx.Client, node: dict[str, Any], words: list[str]
) -> None:
    response = post_json(queue, "/enqueue_batch", {"batch": {"graph": graph_json([{"id": "n", **node}])}})
    assert_refused(response, 422, "'n'", *words)


def test_a_batch_value_over_a_limit_is_refused_at_enqueue(queue: httpx.Client) -> None:
    graph = graph_json([{"id": "s", "type": "string"}, {"id": "r", "type": "range_of_size"}])
    for datum in (("s", "value", ["short", LONG]), ("r", "size", [3, 10_001])):
        response = post_json(queue, "/enqueue_batch", {"batch": {"graph": graph, "data": data([datum])}})
        assert_refused(response, 422, f"'{datum[0]}'", "over the limit")


# --- When the node runs: values an edge brings -------------------------------------------------------------------


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1/queue/default", timeout=30) as c:
        yield c


def run_one(client: httpx.Client, graph: dict[str, Any]) -> dict[str, Any]:
    response = post_json(client, "/enqueue_batch", {"batch": {"graph": graph}})
    assert response.status_code == 200, response.text
    batch_id = response.json()["batch"]["batch_id"]
    waited = client.get(f"/b/{batch_id}/wait", params={"timeout": 30}).json()
    assert waited["finished"], waited
    [item] = waited["items"]
    result: dict[str, Any] = item
    return result


def integer(node_id: str, value: int) -> dict[str, Any]:
    return {"id": node_id, "type": "integer", "value": value}


@pytest.mark.parametrize(
    ("nodes", "edges", "failed", "words"),
    [
        (
            [integer("stop", 10_001), {"id": "r", "type": "range", "start": 0}],
            [edge("stop", "value", "r", "stop")],
            "r",
            ["10,001", "max_collection_size"],
        ),
        (
            [integer("w", 10_000), integer("h", 10_000), {"id": "b", "type": "blank_image"}],
            [edge("w", "value", "b", "width"), edge("h", "value", "b", "height")],
            "b",
            ["(10000 x 10000)", "max_image_pixels"],
        ),
        (
            [{"id": "b", "type": "blank_image"}, {"id": "s", "type": "img_scale", "scale_factor": 100.0}],
            [edge("b", "image", "s", "image")],
            "s",
            ["(51200 x 51200)", "max_image_pixels"],
        ),
        (
            [
                {"id": "b", "type": "blank_image", "width": 8, "height": 8},
                {"id": "p", "type": "img_paste", "x": 2**40, "y": 0},
            ],
            [edge("b", "image", "p", "base_image"), edge("b", "image", "p", "image")],
            "p",
            ["max_image_pixels"],
        ),
        (
            [
                {"id": "j", "type": "string_join", "string_left": "x" * 60_000, "string_right": "y" * 60_000},
                {"id": "k", "type": "string_join"},
            ],
            [edge("j", "value", "k", "string_left")],
            "k",
            ["text input 'string_left'", "120,000", "max_string_length"],
        ),
        (
            [{**GROWING_REPLACE, "replace_string": "b" * 999}],
            [],
            "r",
            ["length of the text node", "max_string_length"],
        ),
    ],
    ids=["range", "blank-image", "scale", "paste", "string-input", "string-replace"],
)
def test_a_value_an_edge_brings_over_a_limit_fails_its_node(
    client: httpx.Client, nodes: list[dict[str, Any]], edges: list[dict[str, Any]], failed: str, words: list[str]
) -> None:
    item = run_one(client, graph_json(nodes, edges))
    node_type = next(node["type"] for node in nodes if node["id"] == failed)
    assert item["status"] == "failed"
    assert item["error_type"] == "LimitExceededError"
    # The node that ran is the graph node's prepared copy, named by its own id and the graph node's type.
    assert f"({node_type})" in item["error_message"]
    for word in words:
        assert word in item["error_message"]
    assert failed not in item["outputs"]


def test_iterations_that_prepare_too_many_nodes_fail_the_session(live_server: StartServer) -> None:
    # Two iterates of 10 items each prepare the add node 100 times: 1 + 10 + 10 x (1 + 10 + 10) nodes in all.
    nodes: list[dict[str, Any]] = [
        {"id": "outer", "type": "range_of_size", "size": 10},
        {"id": "each", "type": "iterate"},
        {"id": "inner", "type": "range_of_size", "size": 10},
        {"id": "item", "type": "iterate"},
        {"id": "sum", "type": "add"},
    ]
    edges = [
        edge("outer", "collection", "each", "collection"),
        edge("each", "item", "inner", "start"),
        edge("inner", "collection", "item", "collection"),
        edge("item", "item", "sum", "a"),
    ]
    for limit, status in ((221, "completed"), (220, "failed")):
        with httpx.Client(base_url=f"{live_server(max_session_nodes=limit).url}/api/v1/queue/default") as client:
            item = run_one(client, graph_json(nodes, edges))
        assert item["status"] == status, item
    assert item["error_type"] == "LimitExceededError"
    assert "max_session_nodes" in item["error_message"]


# --- The request body --------------------------------------------------------------------------------------------


def test_a_body_over_max_request_mb_is_refused_as_it_arrives(live_server: StartServer) -> None:
    server = live_server(max_request_mb=1)
    body = json.dumps({"batch": {"graph": ONE_NODE, "workflow": {"notes": "x" * (MB + 10)}}}).encode()

    def chunked() -> Iterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=f"{server.url}/api/v1/queue/default", timeout=30) as client:
        declared = client.post("/enqueue_batch", content=body, headers=headers)
        # Without a Content-Length: the body is counted as it arrives.
        streamed = client.post("/enqueue_batch", content=chunked(), headers=headers)
        for response in (declared, streamed):
            assert_refused(response, 413, "The request body is larger than 1 MB (max_request_mb)")
        assert client.get("/list_all").json() == []
        small = json.dumps({"batch": {"graph": ONE_NODE}}).encode()
        assert client.post("/enqueue_batch", content=iter([small]), headers=headers).status_code == 200


def test_an_upload_keeps_its_own_limit(live_server: StartServer) -> None:
    server = live_server(max_request_mb=1, max_upload_mb=3)
    # Random pixels do not compress: about 3 bytes a pixel.
    png = io.BytesIO()
    Image.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3)).save(png, format="PNG")
    assert 1 * MB < len(png.getvalue()) < 3 * MB
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as client:
        response = client.post("/images/upload", files={"file": ("big.png", png.getvalue(), "image/png")})
    assert response.status_code == 201, response.text


# --- Uploaded pixels -----------------------------------------------------------------------------------------------


def blank_rows(width: int, height: int) -> bytes:
    """The filtered rows of a black 1-bit image: a filter byte and a bit a pixel for each row."""
    return bytes((1 + (width + 7) // 8) * height)


def png_header(width: int, height: int, pixel_data: bytes) -> bytes:
    """A 1-bit greyscale PNG of that size holding `pixel_data` as its one IDAT chunk."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixel_data) + chunk(b"IEND", b"")


# The defect's file: 13,000 x 13,000 pixels in 20 KB, 0.9 GB once decoded. Pillow warns of a decompression
# bomb at its own, larger limit; this server refuses it at its own.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    "pixel_data",
    [
        zlib.compress(blank_rows(13_000, 13_000), 9),
        # Cut short: decoded, it would be refused as damaged (415), not as too large.
        zlib.compress(bytes(100)),
    ],
    ids=["bomb", "damaged-bomb"],
)
def test_an_upload_of_too_many_pixels_is_refused_from_its_header(shared_server: LiveServer, pixel_data: bytes) -> None:
    bomb = png_header(13_000, 13_000, pixel_data)
    assert len(bomb) < 200_000
    with httpx.Client(base_url=f"{shared_server.url}/api/v1", timeout=30) as client:
        response = client.post("/images/upload", files={"file": ("bomb.png", bomb, "image/png")})
        assert_refused(response, 413, "13000 x 13000", "169,000,000", "limit of 67,108,864 (max_image_pixels)")
        assert client.get("/images/").json()["total"] == 0


def test_the_pixel_limit_is_a_setting(live_server: StartServer) -> None:
    server = live_server(max_image_pixels=1000)
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as client:
        over = png_header(100, 11, zlib.compress(blank_rows(100, 11)))
        refused = client.post("/images/upload", files={"file": ("over.png", over, "image/png")})
        assert_refused(refused, 413, "100 x 11", "(max_image_pixels)")
        within = png_header(100, 10, zlib.compress(blank_rows(100, 10)))
        accepted = client.post("/images/upload", files={"file": ("within.png", within, "image/png")})
        assert accepted.status_code == 201, accepted.text


# --- The socket.io replay buffer -----------------------------------------------------------------------------------


def test_the_replay_buffer_is_bounded_in_bytes(live_server: StartServer) -> None:
    server = live_server(socket_replay_mb=1)
    # Each session's events carry its 50,000-character string once, in the node's output: 40 of them make 2 MB,
    # far fewer events than the 1,000 a queue keeps.
    graph = graph_json([{"id": "s", "type": "string", "value": "x" * 50_000, "use_cache": False}])
    with httpx.Client(base_url=f"{server.url}/api/v1/queue/default", timeout=60) as client:
        response = post_json(client, "/enqueue_batch", {"batch": {"graph": graph, "runs": 40}})
        batch_id = response.json()["batch"]["batch_id"]
        assert client.get(f"/b/{batch_id}/wait", params={"timeout": 60}).json()["finished"]
    replay = server.app.state.sockets.replay
    wait_for(lambda: replay.oldest("default") is not None and replay.oldest("default") > 1, what="old events dropped")
    assert 0.5 * MB < replay.size_bytes <= MB

    # What the memory no longer has comes from the events table.
    last = server.services.events.stored_queue_events("default", 0, 0).last
    listener = Listeners(server.url, subscription={"queue_id": "default", "after": 0})
    events = listener.events[0]
    try:
        wait_for(lambda: len(events) >= last, what="the replay")
    finally:
        listener.close()
    assert [payload["seq"] for _, payload in events] == list(range(1, last + 1))
