"""Images carry what made them where InvokeAI and other tools look: PNG text chunks under InvokeAI's keys, read
back through InvokeAI's routes, whether the image was made here or uploaded from InvokeAI."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image, PngImagePlugin
from tests.app.api.image_api_helpers import upload
from tests.conftest import LiveServer
from tests.helpers import edge, finished_item, graph_json

from nodeloom import __version__

MODEL = {"key": "a1b2", "hash": "blake3:0f", "name": "Dreamshaper 8", "base": "sd-1", "type": "main"}

CORE_METADATA = {
    "generation_mode": "txt2img",
    "positive_prompt": "a red cab at dusk",
    "negative_prompt": "blurry",
    "width": 16,
    "height": 8,
    "seed": 123456,
    "rand_device": "cpu",
    "cfg_scale": 7.5,
    "cfg_rescale_multiplier": 0,
    "steps": 30,
    "scheduler": "dpmpp_3m_k",
    "clip_skip": 0,
    "model": MODEL,
    "loras": [],
    "seamless_x": False,
    "seamless_y": False,
    # Sent by InvokeAI's UI, unknown to this server's node: kept all the same.
    "_canvas_objects": [],
    "ref_images": [],
}


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as c:
        yield c


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    return [without_nulls(item) for item in value] if isinstance(value, list) else value


def run_graph(client: httpx.Client, graph: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/queue/default/enqueue_batch", json={"batch": {"graph": graph}})
    assert response.status_code == 200, response.text
    item_id = response.json()["item_ids"][0]
    item = finished_item(client, f"/queue/default/i/{item_id}")
    assert item["status"] == "completed", item["error_traceback"]
    return item


def test_an_image_node_stores_the_metadata_and_graph_under_invokeais_keys(client: httpx.Client) -> None:
    graph = graph_json(
        [
            {"id": "core_metadata", "type": "core_metadata", "is_intermediate": True, **CORE_METADATA},
            {"id": "canvas_output", "type": "blank_image", "width": 16, "height": 8, "is_intermediate": False},
        ],
        [edge("core_metadata", "metadata", "canvas_output", "metadata")],
    )
    item = run_graph(client, graph)
    [output] = [r for r in item["session"]["results"].values() if r["type"] == "image_output"]
    name = output["image"]["image_name"]

    with Image.open(io.BytesIO(client.get(f"/images/i/{name}/full").content)) as png:
        chunks = dict(png.info)
    assert not {key for key in chunks if str(key).startswith("nodeloom_")}
    assert json.loads(chunks["invokeai_metadata"]) == {**CORE_METADATA, "app_version": __version__}
    sent = json.loads(chunks["invokeai_graph"])
    # The stored graph spells out the node's fields left unset (null), as every stored graph does.
    assert without_nulls(sent["nodes"]) == {
        "core_metadata": {
            "id": "core_metadata",
            "type": "core_metadata",
            "use_cache": True,
            **graph["nodes"]["core_metadata"],
        },
        "canvas_output": {
            "use_cache": True,
            "mode": "RGB",
            "color": {"r": 0, "g": 0, "b": 0, "a": 255},
            **graph["nodes"]["canvas_output"],
        },
    }
    assert sent["edges"] == graph["edges"]

    assert client.get(f"/images/i/{name}/metadata").json() == {**CORE_METADATA, "app_version": __version__}
    embedded = client.get(f"/images/i/{name}/workflow").json()
    assert embedded["workflow"] is None and json.loads(embedded["graph"]) == sent


def invokeai_png(metadata: str | None, graph: str | None, workflow: str | None) -> bytes:
    """A PNG as InvokeAI writes one: the texts under its keys, the metadata first."""
    info = PngImagePlugin.PngInfo()
    for key, text in (("invokeai_metadata", metadata), ("invokeai_workflow", workflow), ("invokeai_graph", graph)):
        if text is not None:
            info.add_text(key, text)
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), "teal").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


INVOKEAI_GRAPH = {
    "id": "sd1-graph:3mNfz",
    "nodes": {
        "core_metadata": {"id": "core_metadata", "type": "core_metadata", "is_intermediate": True, **CORE_METADATA},
        "canvas_output": {"id": "canvas_output", "type": "l2i", "fp32": False, "is_intermediate": False},
    },
    "edges": [edge("core_metadata", "metadata", "canvas_output", "metadata")],
}
INVOKEAI_WORKFLOW = {"name": "SD1.5 text to image", "meta": {"version": "3.0.0", "category": "default"}, "nodes": []}


def test_an_uploaded_invokeai_image_keeps_its_metadata_graph_and_workflow(client: httpx.Client) -> None:
    metadata = {**CORE_METADATA, "app_version": "5.6.0"}
    png = invokeai_png(json.dumps(metadata), json.dumps(INVOKEAI_GRAPH), json.dumps(INVOKEAI_WORKFLOW))
    dto = upload(client, png)
    name = dto["image_name"]
    assert dto["has_workflow"] is True

    assert client.get(f"/images/i/{name}/metadata").json() == metadata
    embedded = client.get(f"/images/i/{name}/workflow").json()
    assert json.loads(embedded["graph"]) == INVOKEAI_GRAPH
    assert json.loads(embedded["workflow"]) == INVOKEAI_WORKFLOW
    with Image.open(io.BytesIO(client.get(f"/images/i/{name}/full").content)) as stored:
        assert json.loads(stored.info["invokeai_metadata"]) == metadata
        assert json.loads(stored.info["invokeai_graph"]) == INVOKEAI_GRAPH


def test_an_uploaded_image_without_metadata_has_none(client: httpx.Client) -> None:
    name = upload(client, invokeai_png(None, json.dumps(INVOKEAI_GRAPH), None))["image_name"]
    assert client.get(f"/images/i/{name}/metadata").json() is None
    assert client.get(f"/images/i/{name}/workflow").json() == {"workflow": None, "graph": json.dumps(INVOKEAI_GRAPH)}


@pytest.mark.parametrize("metadata", ["not json", "[1, 2]", "[" * 100_000 + "]" * 100_000])
def test_embedded_metadata_that_is_no_json_object_is_dropped(client: httpx.Client, metadata: str) -> None:
    # Nested 100,000 deep, JSON exhausts the parser's stack: still the upload's to keep, without its metadata.
    name = upload(client, invokeai_png(metadata, None, None))["image_name"]
    assert client.get(f"/images/i/{name}/metadata").json() is None
