"""SDXL text-to-image through the real queue and processor: the default graph, with and without the refiner, makes
diffusers' images; and recall rebuilds it from its metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.conftest import StartServices
from tests.diffusion_helpers import (
    NEGATIVE_PROMPT,
    NOISE_SIZE,
    PROMPT,
    SEED,
    filter_diffusers_numpy,
    sdxl_reference_image,
)
from tests.helpers import wait_for

from nodeloom.app.invocations.fields import ModelIdentifierField
from nodeloom.app.invocations.image import ImageOutput
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID, Batch, SessionQueueItem
from nodeloom.app.services.shared.default_graphs import (
    DECODE_ID,
    DENOISE_ID,
    METADATA_ID,
    MODEL_LOADER_ID,
    REFINER_DENOISE_ID,
    REFINER_LOADER_ID,
    RefinerNeedsSDXLError,
    text_to_image_graph,
)
from nodeloom.backend.model_manager.taxonomy import BaseModelType
from nodeloom.cli.images import RecallError, recall_batch

pytestmark = filter_diffusers_numpy

STEPS = 4


@pytest.mark.parametrize("refiner_start", [None, 0.5])
def test_the_sdxl_text_to_image_graph_makes_the_pipelines_image(
    start_services: StartServices, tiny_sdxl_models: tuple[Path, Path], refiner_start: float | None
) -> None:
    services, _ = start_services(model_install_roots=[tiny_sdxl_models[0].parent])
    base, refiner = (
        ModelIdentifierField.from_config(services.model_manager.install.install_path(folder, ModelRecordChanges()))
        for folder in tiny_sdxl_models
    )
    graph = text_to_image_graph(
        base,
        PROMPT,
        NEGATIVE_PROMPT,
        NOISE_SIZE,
        NOISE_SIZE,
        STEPS,
        7.5,
        "ddim",
        SEED,
        refiner=None if refiner_start is None else refiner,
        refiner_start=refiner_start or 0.8,
    )
    item_id = services.session_queue.enqueue_batch(DEFAULT_QUEUE_ID, Batch(graph=graph), prepend=False).item_ids[0]

    def finished() -> SessionQueueItem | None:
        item = services.session_queue.get_queue_item(item_id)
        return item if item.status in ("completed", "failed", "canceled") else None

    item = wait_for(finished, timeout=60, what="the session to finish")
    assert item.status == "completed", item.error_traceback
    decoded = item.session.results[next(iter(item.session.source_prepared_mapping[DECODE_ID]))]
    assert isinstance(decoded, ImageOutput)
    image = np.asarray(services.images.get_pil_image(decoded.image.image_name).convert("RGB"))
    expected = sdxl_reference_image(tiny_sdxl_models, "ddim", NEGATIVE_PROMPT, STEPS, NOISE_SIZE, refiner_start)
    assert np.array_equal(image, expected)


def test_a_refiner_needs_an_sdxl_base() -> None:
    model = ModelIdentifierField(key="k", hash="h", name="Dream", base=BaseModelType.StableDiffusion1, type="main")
    with pytest.raises(RefinerNeedsSDXLError, match="'Dream' is a sd-1 model"):
        text_to_image_graph(model, PROMPT, refiner=model)


def test_recall_rebuilds_the_sdxl_graph_with_its_refiner() -> None:
    base = ModelIdentifierField(key="b", hash="h", name="XL", base=BaseModelType.StableDiffusionXL, type="main")
    refiner = base.model_copy(update={"key": "r", "name": "XL refiner", "base": BaseModelType.StableDiffusionXLRefiner})
    graph = text_to_image_graph(base, PROMPT, NEGATIVE_PROMPT, refiner=refiner, refiner_start=0.7)
    metadata = graph.nodes[METADATA_ID].model_dump(mode="json")
    assert metadata["generation_mode"] == "sdxl_txt2img"

    recalled = recall_batch(metadata, seed=None)["graph"]
    assert isinstance(recalled, dict)
    nodes = recalled["nodes"]
    assert nodes[MODEL_LOADER_ID]["type"] == "sdxl_model_loader"
    assert nodes[REFINER_LOADER_ID]["model"]["key"] == "r"
    assert (nodes[DENOISE_ID]["denoising_end"], nodes[REFINER_DENOISE_ID]["denoising_start"]) == (0.7, 0.7)

    sd1 = {**metadata, "model": base.model_copy(update={"base": BaseModelType.StableDiffusion1}).model_dump()}
    with pytest.raises(RecallError, match="A refiner refines an SDXL base, and 'XL' is a sd-1 model"):
        recall_batch(sd1, seed=None)
