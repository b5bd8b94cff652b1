"""Text-to-image through the real queue and processor, on the tiny model installed by the model manager."""

from __future__ import annotations

import functools
from pathlib import Path

from tests.conftest import Recorder, StartServices
from tests.diffusion_helpers import NEGATIVE_PROMPT, PROMPT, filter_diffusers_numpy
from tests.helpers import wait_for

from nodeloom.app.invocations.fields import ModelIdentifierField
from nodeloom.app.invocations.image import ImageOutput
from nodeloom.app.services.invocation_services import InvocationServices
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID, Batch, SessionQueueItem
from nodeloom.app.services.shared.default_graphs import DECODE_ID, DENOISE_ID, text_to_image_graph
from nodeloom.backend.model_manager.taxonomy import BaseModelType

pytestmark = filter_diffusers_numpy


def install(services: InvocationServices, tiny_sd_model: Path) -> ModelIdentifierField:
    config = services.model_manager.install.install_path(
        tiny_sd_model, ModelRecordChanges(base=BaseModelType.StableDiffusion1)
    )
    return ModelIdentifierField.from_config(config)


def enqueue(services: InvocationServices, model: ModelIdentifierField, steps: int, board_id: str | None = None) -> int:
    graph = text_to_image_graph(model, PROMPT, NEGATIVE_PROMPT, 64, 64, steps, 7.5, "euler_a", 42, board_id)
    result = services.session_queue.enqueue_batch(DEFAULT_QUEUE_ID, Batch(graph=graph), prepend=False)
    return result.item_ids[0]


def finished(services: InvocationServices, item_id: int) -> SessionQueueItem | None:
    item = services.session_queue.get_queue_item(item_id)
    return item if item.status in ("completed", "failed", "canceled") else None


def denoise_steps(recorder: Recorder) -> list[str]:
    return [event.message for event in recorder.of("invocation_progress") if event.message.startswith("Denoising step")]


def test_text_to_image_puts_an_image_on_the_board(start_services: StartServices, tiny_sd_model: Path) -> None:
    services, recorder = start_services(model_install_roots=[tiny_sd_model.parent])
    board = services.boards.create("renders")
    item_id = enqueue(services, install(services, tiny_sd_model), steps=3, board_id=board.board_id)

    item = wait_for(functools.partial(finished, services, item_id), timeout=60, what="the session to finish")
    assert item.status == "completed", item.error_traceback
    decoded = item.session.results[next(iter(item.session.source_prepared_mapping[DECODE_ID]))]
    assert isinstance(decoded, ImageOutput)
    image_name = decoded.image.image_name
    assert services.boards.get_all_image_names_for_board(board.board_id) == [image_name]
    assert services.images.get_pil_image(image_name).size == (16, 16)

    assert denoise_steps(recorder) == ["Denoising step 1 of 3", "Denoising step 2 of 3", "Denoising step 3 of 3"]
    previews = [e.image for e in recorder.of("invocation_progress") if e.image is not None]
    assert len(previews) == 3
    assert all(p.dataURL.startswith("data:image/jpeg;base64,") for p in previews)


def test_a_cancel_during_denoising_stops_at_the_next_step(start_services: StartServices, tiny_sd_model: Path) -> None:
    services, recorder = start_services(model_install_roots=[tiny_sd_model.parent])
    item_id = enqueue(services, install(services, tiny_sd_model), steps=500)

    wait_for(lambda: len(denoise_steps(recorder)) >= 2, timeout=60, what="denoising to start")
    services.session_queue.cancel_queue_item(item_id)
    steps_at_cancel = len(denoise_steps(recorder))

    wait_for(
        lambda: services.session_processor.get_status().current_item_id != item_id,
        timeout=30,
        what="the processor to stop the session",
    )
    # The step running when the cancel arrived may still report; the one after it raises in its report.
    assert len(denoise_steps(recorder)) <= steps_at_cancel + 1
    assert services.session_queue.get_queue_item(item_id).status == "canceled"
    assert not any(e.invocation_source_id == DENOISE_ID for e in recorder.of("invocation_complete"))


def test_the_second_session_loads_the_models_from_the_cache(start_services: StartServices, tiny_sd_model: Path) -> None:
    services, recorder = start_services(model_install_roots=[tiny_sd_model.parent])
    model = install(services, tiny_sd_model)
    first, second = enqueue(services, model, steps=1), enqueue(services, model, steps=1)
    for item_id in (first, second):
        item = wait_for(functools.partial(finished, services, item_id), timeout=60, what=f"item {item_id} to finish")
        assert item.status == "completed", item.error_traceback
    loads = recorder.of("model_load_started")
    assert {event.submodel_type for event in loads} == {"unet", "scheduler", "text_encoder", "tokenizer", "vae"}
    assert len(loads) == 5
