"""Text-to-image on the tiny test models: one JSON object per measurement.

(a) the text-to-image graph through the real queue and processor against `StableDiffusionPipeline` alone, in the
same process with the same settings (a 64x64 image, 10 steps, euler_a, CFG 7.5), models loaded for both: the
median of `RUNS` sessions, from enqueue to completion, against the median of `RUNS` pipeline calls, with each
node type's time in the last session; the same for the tiny SDXL base against `StableDiffusionXLPipeline` (size
conditioning at the noise's size in both); (b) model loading: the five parts of the model loaded through the model
manager into an empty cache, then again (cache hits), as the first and second session load them. The last line
sums up with `graph_over_pipeline` and `sdxl_graph_over_pipeline` (targets under 1.10) and `cache_hit_over_cold`
(target under 0.01).

The tiny VAE maps 2x2 pixels to a latent where Stable Diffusion's maps 8x8: the graph's noise is made for 256x256
pixels (32x32 latents, InvokeAI's 1/8) and decodes to 64x64, the size the pipeline is asked for.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# The tiny model is built by the tests' builder, from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.tiny_model import build_tiny_sd, build_tiny_sdxl, quiet_torch

from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.invocations.fields import ModelIdentifierField
from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.events.events_common import EventBase, QueueItemStatusChangedEvent
from nodeloom.app.services.invocation_services import InvocationServices, build_services
from nodeloom.app.services.invoker import Invoker
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID, Batch
from nodeloom.app.services.shared.default_graphs import text_to_image_graph
from nodeloom.backend.model_manager.configs import AnyModelConfig
from nodeloom.backend.model_manager.taxonomy import BaseModelType, SubModelType
from nodeloom.backend.stable_diffusion.schedulers import SCHEDULER_NAME_VALUES

RUNS = 5
IMAGE_SIZE = 64
NOISE_SIZE = IMAGE_SIZE * 4
STEPS = 10
SCHEDULER: SCHEDULER_NAME_VALUES = "euler_a"
PROMPT = "a cab"
NEGATIVE_PROMPT = "bad"
PARTS = (SubModelType.Tokenizer, SubModelType.TextEncoder, SubModelType.Scheduler, SubModelType.UNet, SubModelType.VAE)


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def install(
    services: InvocationServices, model: Path, base: BaseModelType | None = BaseModelType.StableDiffusion1
) -> AnyModelConfig:
    """Installs `model` with `base`, or with the base probing finds when None."""
    return services.model_manager.install.install_path(model, ModelRecordChanges(base=base))


def run_session(services: InvocationServices, model: ModelIdentifierField, seed: int) -> tuple[float, int]:
    """Seconds from enqueue to completion, and the queue item's id. The end is awaited on the event bus, not by
    polling, which would take the CPU and the GIL from the session it measures."""
    graph = text_to_image_graph(model, PROMPT, NEGATIVE_PROMPT, NOISE_SIZE, NOISE_SIZE, STEPS, 7.5, SCHEDULER, seed)
    finished = threading.Event()

    def on_event(event: EventBase) -> None:
        if isinstance(event, QueueItemStatusChangedEvent) and event.status in ("completed", "failed", "canceled"):
            finished.set()

    unsubscribe = services.events.subscribe(on_event)
    started = time.perf_counter()
    item_id = services.session_queue.enqueue_batch(DEFAULT_QUEUE_ID, Batch(graph=graph), prepend=False).item_ids[0]
    finished.wait()
    elapsed = time.perf_counter() - started
    unsubscribe()
    item = services.session_queue.get_queue_item(item_id)
    if item.status != "completed":
        raise RuntimeError(f"The session ended {item.status}: {item.error_message}")
    return elapsed, item_id


def bench_graph_against_pipeline(root: Path, model: Path, sdxl: bool) -> dict[str, Any]:
    """Sessions and pipeline calls alternate, so that a busy machine slows both alike."""
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from nodeloom.backend.stable_diffusion.schedulers import make_scheduler

    pipeline: Any
    extra: dict[str, Any] = {}
    if sdxl:
        pipeline = StableDiffusionXLPipeline.from_pretrained(model, local_files_only=True, add_watermarker=False)
        # The graph conditions SDXL on the size it is given, the noise's.
        extra = {"original_size": (NOISE_SIZE, NOISE_SIZE), "target_size": (NOISE_SIZE, NOISE_SIZE)}
    else:
        pipeline = StableDiffusionPipeline.from_pretrained(model, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    pipeline.scheduler = make_scheduler(SCHEDULER, pipeline.scheduler.config)

    def run_pipeline(seed: int) -> float:
        started = time.perf_counter()
        pipeline(
            PROMPT,
            negative_prompt=NEGATIVE_PROMPT,
            num_inference_steps=STEPS,
            guidance_scale=7.5,
            width=IMAGE_SIZE,
            height=IMAGE_SIZE,
            generator=torch.Generator("cpu").manual_seed(seed),
            **extra,
        )
        return time.perf_counter() - started

    services = build_services(load_config(root, processor_poll_interval_s=0.01, model_install_roots=[model.parent]))
    invoker = Invoker(services)
    invoker.start()
    try:
        identifier = ModelIdentifierField.from_config(
            install(services, model, None if sdxl else BaseModelType.StableDiffusion1)
        )
        # The first of each loads the models and warms diffusers up.
        run_session(services, identifier, seed=0)
        run_pipeline(seed=0)
        graph_runs, pipeline_runs = [], []
        for seed in range(1, RUNS + 1):
            graph_runs.append(run_session(services, identifier, seed))
            pipeline_runs.append(run_pipeline(seed))
        stats = services.session_queue.get_queue_item_stats(graph_runs[-1][1])
    finally:
        invoker.stop()
    assert stats is not None, "the processor keeps each finished session's stats on its item"
    node_stats: list[dict[str, Any]] = stats["node_stats"]  # type: ignore[assignment]
    nodes = {node["node_type"]: round(node["time_used_seconds"] * 1000, 2) for node in node_stats}
    return {
        "graph_ms": statistics.median(elapsed for elapsed, _ in graph_runs) * 1000,
        "pipeline_ms": statistics.median(pipeline_runs) * 1000,
        "node_ms": nodes,
    }


def bench_model_loading(root: Path, model: Path) -> dict[str, float]:
    services = build_services(load_config(root, model_install_roots=[model.parent]))
    try:
        config = install(services, model)

        def load_all() -> float:
            started = time.perf_counter()
            for part in PARTS:
                with services.model_manager.load.load_model(config, part, session_id="bench"):
                    pass
            return time.perf_counter() - started

        cold, cached = load_all(), load_all()
    finally:
        services.database.close()
    return {"cold_load_ms": cold * 1000, "cached_load_ms": cached * 1000}


def main() -> None:
    quiet_torch()
    load_builtin_nodes()
    with tempfile.TemporaryDirectory() as folder:
        model = build_tiny_sd(Path(folder) / "tiny-sd")
        graph = bench_graph_against_pipeline(Path(folder) / "graph-root", model, sdxl=False)
        emit(
            {
                "measurement": "text_to_image",
                "model": "sd-1",
                "image": IMAGE_SIZE,
                "steps": STEPS,
                "runs": RUNS,
                **graph,
            }
        )
        sdxl_model, _ = build_tiny_sdxl(Path(folder) / "tiny-sdxl")
        sdxl = bench_graph_against_pipeline(Path(folder) / "sdxl-graph-root", sdxl_model, sdxl=True)
        emit(
            {"measurement": "text_to_image", "model": "sdxl", "image": IMAGE_SIZE, "steps": STEPS, "runs": RUNS, **sdxl}
        )
        loading = bench_model_loading(Path(folder) / "load-root", model)
        emit({"measurement": "model_loading", "parts": [part.value for part in PARTS], **loading})
    emit(
        {
            "measurement": "summary",
            "graph_over_pipeline": graph["graph_ms"] / graph["pipeline_ms"],
            "sdxl_graph_over_pipeline": sdxl["graph_ms"] / sdxl["pipeline_ms"],
            "cache_hit_over_cold": loading["cached_load_ms"] / loading["cold_load_ms"],
        }
    )


if __name__ == "__main__":
    main()
