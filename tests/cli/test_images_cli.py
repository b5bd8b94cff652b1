"""`nodeloom images recall`, run as a subprocess against a real server with the tiny model installed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.app.api.image_api_helpers import upload
from tests.app.api.test_image_metadata_api import invokeai_png
from tests.cli.test_client_commands import nodeloom
from tests.conftest import LiveServer
from tests.diffusion_helpers import NEGATIVE_PROMPT, PROMPT, filter_diffusers_numpy
from tests.helpers import finished_item

from nodeloom.app.invocations.fields import ModelIdentifierField
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.app.services.shared.default_graphs import DECODE_ID, NOISE_ID, text_to_image_graph
from nodeloom.backend.model_manager.taxonomy import BaseModelType

pytestmark = filter_diffusers_numpy


def completed_item(api: httpx.Client, item_id: int) -> dict[str, Any]:
    item = finished_item(api, f"/api/v1/queue/default/i/{item_id}")
    assert item["status"] == "completed", item["error_traceback"]
    return item


def image_of(item: dict[str, Any]) -> str:
    [decoded] = item["session"]["source_prepared_mapping"][DECODE_ID]
    name: str = item["session"]["results"][decoded]["image"]["image_name"]
    return name


def test_recall_prints_the_settings_and_enqueues_them_with_a_new_seed(
    live_server: Callable[..., LiveServer], tiny_sd_model: Path
) -> None:
    server = live_server(model_install_roots=[tiny_sd_model.parent])
    config = server.services.model_manager.install.install_path(
        tiny_sd_model, ModelRecordChanges(base=BaseModelType.StableDiffusion1)
    )
    model = ModelIdentifierField.from_config(config)
    graph = text_to_image_graph(model, PROMPT, NEGATIVE_PROMPT, 64, 64, 2, 6.5, "euler_a", 42)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        enqueued = api.post("/api/v1/queue/default/enqueue_batch", json={"batch": {"graph": graph.model_dump()}})
        first = image_of(completed_item(api, enqueued.json()["item_ids"][0]))

        shown = nodeloom("images", "recall", first, "--url", server.url)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        for line in (
            f"positive_prompt: {PROMPT}",
            f"negative_prompt: {NEGATIVE_PROMPT}",
            "width: 64",
            "height: 64",
            "steps: 2",
            "cfg_scale: 6.5",
            "scheduler: euler_a",
            "seed: 42",
            f"model: {model.name} (sd-1, key {model.key})",
        ):
            assert line in lines

        again = nodeloom("images", "recall", first, "--enqueue", "--seed", "7", "--json", "--url", server.url)
        assert again.returncode == 0, again.stderr
        answer = json.loads(again.stdout)
        assert answer["metadata"]["seed"] == 42
        item = completed_item(api, answer["enqueued"]["item_ids"][0])
        second = image_of(item)
        assert item["session"]["graph"]["nodes"][NOISE_ID]["seed"] == 7
        recalled = api.get(f"/api/v1/images/i/{second}/metadata").json()
        assert recalled == {**answer["metadata"], "seed": 7}
        assert api.get(f"/api/v1/images/i/{second}/full").content != api.get(f"/api/v1/images/i/{first}/full").content

        readable = nodeloom("images", "recall", second, "--enqueue", "--url", server.url)
        assert readable.returncode == 0, readable.stderr
        assert readable.stdout.splitlines()[-1].endswith("with seed 7")


@pytest.fixture
def bare_server(live_server: Callable[..., LiveServer]) -> LiveServer:
    return live_server()


def test_recall_of_an_image_without_settings_says_so(bare_server: LiveServer) -> None:
    with httpx.Client(base_url=f"{bare_server.url}/api/v1", timeout=30) as api:
        plain = upload(api)["image_name"]
        prompt_only = json.dumps({"positive_prompt": "a cab"})
        partial = upload(api, invokeai_png(prompt_only, None, None))["image_name"]

    missing = nodeloom("images", "recall", plain, "--url", bare_server.url)
    assert missing.returncode == 2
    assert f"image {plain} carries no metadata" in missing.stderr

    shown = nodeloom("images", "recall", partial, "--url", bare_server.url)
    assert shown.returncode == 0 and shown.stdout == "positive_prompt: a cab\n"
    refused = nodeloom("images", "recall", partial, "--enqueue", "--url", bare_server.url)
    assert refused.returncode == 2
    assert "its metadata names no model and prompt to make it again with" in refused.stderr

    unknown = nodeloom("images", "recall", f"{uuid.uuid4()}.png", "--url", bare_server.url)
    assert unknown.returncode == 1 and "404 Not Found" in unknown.stderr
    not_a_name = nodeloom("images", "recall", "not-a-name.png", "--url", bare_server.url)
    assert not_a_name.returncode == 1 and "is not an image name" in not_a_name.stderr
