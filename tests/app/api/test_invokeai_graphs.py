"""Graphs in the shape InvokeAI's UI builds them, enqueued over HTTP as its UI enqueues them, on the tiny model.

The fixtures in `tests/fixtures/invokeai/` are the bodies InvokeAI's UI posts to `enqueue_batch` for SD-1.5
text-to-image (generate tab), image-to-image (canvas) and text-to-image with a LoRA, as its graph builders make
them (`buildSD1Graph.ts`, `addTextToImage.ts`, `addImageToImage.ts`, `addLoRAs.ts`, `buildLinearBatchConfig.ts`).
What the UI takes from the server is a placeholder: `$MAIN_MODEL_CONFIG` (the main model's config, which the UI
puts whole into the loader), `$MAIN_MODEL` and `$LORA_MODEL` (model identifiers) and `$INIT_IMAGE` (the canvas's
composite image).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngImageFile
from tests.app.api.image_api_helpers import encode
from tests.conftest import LiveServer
from tests.diffusion_helpers import filter_diffusers_numpy
from tests.helpers import edge
from tests.model_sources import install_and_wait
from tests.tiny_model import TINY_SD1_LORA_LAYERS, LoRAKind, write_lora_of_kind

from nodeloom.app.services.shared.default_graphs import DECODE_ID, DENOISE_ID, MODEL_LOADER_ID, text_to_image_graph

pytestmark = filter_diffusers_numpy

FIXTURES = Path(__file__).parents[2] / "fixtures" / "invokeai"
OUTPUT_ID = "canvas_output:Nb8vC6xZ4a"
"""The UI's output node, the decoder renamed by `selectCanvasOutputFields`; the same id in every fixture."""
IDENTIFIER_FIELDS = ("key", "hash", "name", "base", "type")


def ui_body(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """The fixture `name`, with each placeholder string replaced by its value."""

    def fill(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("$"):
            return values[value[1:]]
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        if isinstance(value, list):
            return [fill(item) for item in value]
        return value

    body: dict[str, Any] = fill(json.loads((FIXTURES / f"{name}.json").read_text()))
    return body


@pytest.fixture
def server(live_server: Callable[..., LiveServer], tiny_sd_model: Path, tmp_path: Path) -> LiveServer:
    return live_server(model_install_roots=[tiny_sd_model.parent, tmp_path])


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api", timeout=60) as c:
        yield c


def install(client: httpx.Client, path: Path) -> dict[str, Any]:
    with httpx.Client(base_url=f"{client.base_url}v2/models", timeout=60) as models:
        job = install_and_wait(models, path, base="sd-1")
    assert job["status"] == "completed", job
    config: dict[str, Any] = job["config_out"]
    return config


def identifier(config: dict[str, Any]) -> dict[str, Any]:
    """The model identifier the UI makes of a config (`zModelIdentifierField.parse`)."""
    return {field: config[field] for field in IDENTIFIER_FIELDS}


def run_png(client: httpx.Client, body: dict[str, Any], output_id: str) -> PngImageFile:
    """Enqueues the body, waits for its one session, and returns the PNG of the image of node `output_id`."""
    response = client.post("/v1/queue/default/enqueue_batch", json=body)
    assert response.status_code == 200, response.text
    batch_id = response.json()["batch"]["batch_id"]
    waited = client.get(f"/v1/queue/default/b/{batch_id}/wait", params={"timeout": 120}).json()
    [item] = waited["items"]
    assert item["status"] == "completed", item
    image_name = item["outputs"][output_id][0]["image"]["image_name"]
    full = client.get(f"/v1/images/i/{image_name}/full")
    assert full.status_code == 200
    png = Image.open(io.BytesIO(full.content))
    assert isinstance(png, PngImageFile)
    return png


def run(client: httpx.Client, body: dict[str, Any], output_id: str) -> np.ndarray[Any, Any]:
    """The pixels of the image of node `output_id` that the body makes."""
    return np.asarray(run_png(client, body, output_id).convert("RGB"))


def plain_body(model: dict[str, Any]) -> dict[str, Any]:
    """nodeloom's own text-to-image graph with the UI fixtures' settings, as a plain batch."""
    graph = text_to_image_graph(model, "a cab", "bad", 64, 64, 4, 7.5, "dpmpp_3m_k", 1234).model_dump(mode="json")
    graph["nodes"][DECODE_ID]["fp32"] = True
    return {"batch": {"graph": graph}}


@pytest.fixture
def main_model(client: httpx.Client, tiny_sd_model: Path) -> dict[str, Any]:
    return install(client, tiny_sd_model)


def test_the_uis_text_to_image_graph_makes_the_plain_graphs_image(
    client: httpx.Client, main_model: dict[str, Any]
) -> None:
    body = ui_body("sd1_text_to_image", {"MAIN_MODEL_CONFIG": main_model, "MAIN_MODEL": identifier(main_model)})
    png = run_png(client, body, OUTPUT_ID)
    ui_pixels = np.asarray(png.convert("RGB"))
    assert ui_pixels.shape == (16, 16, 3)
    assert np.array_equal(ui_pixels, run(client, plain_body(identifier(main_model)), DECODE_ID))

    # The PNG holds what InvokeAI's recall reads: the core_metadata node's settings and the graph as sent.
    graph = body["batch"]["graph"]
    [sent] = [node for node in graph["nodes"].values() if node["type"] == "core_metadata"]
    settings = {key: value for key, value in sent.items() if key not in ("id", "type", "is_intermediate", "use_cache")}
    stored = json.loads(png.text["invokeai_metadata"])
    assert {key: stored[key] for key in settings} == settings
    assert (stored["seed"], stored["positive_prompt"], stored["negative_prompt"]) == (1234, "a cab", "bad")
    assert set(json.loads(png.text["invokeai_graph"])["nodes"]) == set(graph["nodes"])


def test_the_uis_image_to_image_graph_makes_the_plain_graphs_image(
    client: httpx.Client, main_model: dict[str, Any]
) -> None:
    # The canvas uploads its composite as an intermediate image before it builds the graph.
    uploaded = client.post(
        "/v1/images/upload",
        files={"file": ("composite.png", encode(size=(16, 16), color="teal"), "image/png")},
        params={"image_category": "general", "is_intermediate": True},
    )
    assert uploaded.status_code == 201, uploaded.text
    init_image = uploaded.json()["image_name"]
    values = {"MAIN_MODEL_CONFIG": main_model, "MAIN_MODEL": identifier(main_model), "INIT_IMAGE": init_image}
    ui_pixels = run(client, ui_body("sd1_image_to_image", values), OUTPUT_ID)

    plain = plain_body(identifier(main_model))
    graph = plain["batch"]["graph"]
    graph["nodes"]["i2l"] = {"id": "i2l", "type": "i2l", "fp32": True, "image": {"image_name": init_image}}
    graph["nodes"][DENOISE_ID]["denoising_start"] = 0.25
    graph["edges"] += [edge(MODEL_LOADER_ID, "vae", "i2l", "vae"), edge("i2l", "latents", DENOISE_ID, "latents")]
    assert np.array_equal(ui_pixels, run(client, plain, DECODE_ID))
    assert not np.array_equal(ui_pixels, run(client, plain_body(identifier(main_model)), DECODE_ID))


@pytest.mark.parametrize("kind", ["lora", "loha", "lokr"])
def test_the_uis_lora_graph_makes_the_plain_graphs_image(
    client: httpx.Client, main_model: dict[str, Any], tmp_path: Path, kind: LoRAKind
) -> None:
    lora_file = write_lora_of_kind(tmp_path / f"tiny-{kind}.safetensors", kind, TINY_SD1_LORA_LAYERS)
    lora = identifier(install(client, lora_file))
    values = {"MAIN_MODEL_CONFIG": main_model, "MAIN_MODEL": identifier(main_model), "LORA_MODEL": lora}
    ui_pixels = run(client, ui_body("sd1_text_to_image_lora", values), OUTPUT_ID)

    plain = plain_body(identifier(main_model))
    graph = plain["batch"]["graph"]
    graph["nodes"]["lora"] = {"id": "lora", "type": "lora_loader", "lora": lora, "weight": 0.75}
    rerouted = {("unet", DENOISE_ID), ("clip", "positive_prompt"), ("clip", "negative_prompt")}
    for item in graph["edges"]:
        if (
            item["source"]["node_id"] == MODEL_LOADER_ID
            and (item["source"]["field"], item["destination"]["node_id"]) in rerouted
        ):
            item["source"]["node_id"] = "lora"
    graph["edges"] += [edge(MODEL_LOADER_ID, "unet", "lora", "unet"), edge(MODEL_LOADER_ID, "clip", "lora", "clip")]
    assert np.array_equal(ui_pixels, run(client, plain, DECODE_ID))
    assert not np.array_equal(ui_pixels, run(client, plain_body(identifier(main_model)), DECODE_ID))


UNINSTALLED = {"key": "k", "hash": "h", "name": "n", "base": "sd-1", "type": "main"}
"""A model for graphs that are refused at enqueue, before any model is looked up."""
DENOISE = "denoise_latents:Rt5yU7iO9p"
NOISE = "noise:Mn2bV4cX6z"
I2L = "i2l:Ce3xZ5vB7n"


def refused_graph_body(fixture: str) -> dict[str, Any]:
    values = {"MAIN_MODEL_CONFIG": UNINSTALLED, "MAIN_MODEL": UNINSTALLED, "INIT_IMAGE": "missing.png"}
    return ui_body(fixture, values)


@pytest.mark.parametrize(
    ("node_id", "field", "value", "feature"),
    [
        (DENOISE, "control", {"image": {"image_name": "edges.png"}, "control_weight": 1}, "ControlNets"),
        (DENOISE, "ip_adapter", [{"image": {"image_name": "face.png"}, "weight": 1}], "IP-Adapters"),
        (DENOISE, "t2i_adapter", {"image": {"image_name": "depth.png"}}, "T2I-Adapters"),
        (DENOISE, "hidiffusion", True, "HiDiffusion"),
        (DENOISE, "cfg_scale", [7.5, 7.5, 5, 5], "a CFG scale per step"),
        (NOISE, "noise_type", "FLUX", "noise for other models than SD"),
        (I2L, "color_compensation", "SDXL", "colour compensation for SDXL VAEs"),
    ],
)
def test_a_set_value_of_an_input_nodeloom_does_not_implement_is_a_422_naming_it(
    client: httpx.Client, node_id: str, field: str, value: Any, feature: str
) -> None:
    body = refused_graph_body("sd1_image_to_image")
    body["batch"]["graph"]["nodes"][node_id][field] = value
    response = client.post("/v1/queue/default/enqueue_batch", json=body)
    assert response.status_code == 422, response.text
    assert f"input '{field}' ({feature}) is not supported yet" in response.text


def test_an_edge_into_an_input_nodeloom_does_not_implement_is_a_422_naming_it(client: httpx.Client) -> None:
    body = refused_graph_body("sd1_text_to_image")
    graph = body["batch"]["graph"]
    collector = "ip_adapter_collector:Bn3mK5jH7g"
    graph["nodes"][collector] = {"id": collector, "type": "collect", "is_intermediate": True, "use_cache": True}
    graph["edges"].append(edge(collector, "collection", DENOISE, "ip_adapter"))
    response = client.post("/v1/queue/default/enqueue_batch", json=body)
    assert response.status_code == 422, response.text
    assert (
        f"Input 'ip_adapter' of node '{DENOISE}' (denoise_latents) (IP-Adapters) is not supported yet" in response.text
    )


def test_batch_data_setting_an_input_nodeloom_does_not_implement_is_a_422(client: httpx.Client) -> None:
    body = refused_graph_body("sd1_text_to_image")
    body["batch"]["data"].append([{"node_path": DENOISE, "field_name": "hidiffusion", "items": [False, True]}])
    response = client.post("/v1/queue/default/enqueue_batch", json=body)
    assert response.status_code == 422, response.text
    assert "input 'hidiffusion' (HiDiffusion) is not supported yet" in response.text
