"""Ready-made graphs: text-to-image on a Stable Diffusion 1.x/2.x or SDXL main model, with an SDXL refiner or not.

The graphs' node ids are fixed, so that a batch can vary a field by its node path: the seed is the `noise`
node's `seed` (`{"node_path": "noise", "field_name": "seed", "items": [...]}`), and a `rand_int` node may be
connected to it instead. The settings are also recorded by a `core_metadata` node, embedded in the image so that
it can be made again (`nodeloom images recall`); a batch that varies a setting zips the item list of the
`core_metadata` field of the same name with it, as InvokeAI's UI does, so each image records its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodeloom.app.invocations.baseinvocation import BaseInvocation
from nodeloom.app.invocations.compel import (
    CompelInvocation,
    SDXLCompelPromptInvocation,
    SDXLRefinerCompelPromptInvocation,
)
from nodeloom.app.invocations.denoise_latents import DenoiseLatentsInvocation
from nodeloom.app.invocations.fields import BoardField, ModelIdentifierField
from nodeloom.app.invocations.latents import LatentsToImageInvocation
from nodeloom.app.invocations.metadata import CoreMetadataInvocation
from nodeloom.app.invocations.model import MainModelLoaderInvocation
from nodeloom.app.invocations.noise import NoiseInvocation
from nodeloom.app.invocations.sdxl import SDXLModelLoaderInvocation, SDXLRefinerModelLoaderInvocation
from nodeloom.app.services.shared.graph import Graph
from nodeloom.app.services.shared.graph_common import Edge, EdgeConnection
from nodeloom.backend.model_manager.taxonomy import BaseModelType
from nodeloom.backend.stable_diffusion.schedulers import SCHEDULER_NAME_VALUES
from nodeloom.errors import NodeloomError

MODEL_LOADER_ID = "model_loader"
POSITIVE_PROMPT_ID = "positive_prompt"
NEGATIVE_PROMPT_ID = "negative_prompt"
NOISE_ID = "noise"
DENOISE_ID = "denoise_latents"
DECODE_ID = "l2i"
METADATA_ID = "core_metadata"
"""The node ids of the text-to-image graph; `l2i` saves the image, with the settings `core_metadata` records."""
REFINER_LOADER_ID = "refiner_model_loader"
REFINER_POSITIVE_PROMPT_ID = "refiner_positive_prompt"
REFINER_NEGATIVE_PROMPT_ID = "refiner_negative_prompt"
REFINER_DENOISE_ID = "refiner_denoise_latents"
"""The node ids the SDXL refiner adds: its denoising takes the base's latents and gives them to `l2i`."""

REFINER_POSITIVE_AESTHETIC_SCORE = 6.0
REFINER_NEGATIVE_AESTHETIC_SCORE = 2.5
"""The aesthetic scores InvokeAI's UI and diffusers' refiner pipeline condition on by default."""

Edges = tuple[tuple[str, str, str, str], ...]

_EDGES: Edges = (
    (MODEL_LOADER_ID, "clip", POSITIVE_PROMPT_ID, "clip"),
    (MODEL_LOADER_ID, "clip", NEGATIVE_PROMPT_ID, "clip"),
    (MODEL_LOADER_ID, "unet", DENOISE_ID, "unet"),
    (POSITIVE_PROMPT_ID, "conditioning", DENOISE_ID, "positive_conditioning"),
    (NEGATIVE_PROMPT_ID, "conditioning", DENOISE_ID, "negative_conditioning"),
    (NOISE_ID, "noise", DENOISE_ID, "noise"),
    (METADATA_ID, "metadata", DECODE_ID, "metadata"),
)
_SDXL_EDGES: Edges = (
    (MODEL_LOADER_ID, "clip2", POSITIVE_PROMPT_ID, "clip2"),
    (MODEL_LOADER_ID, "clip2", NEGATIVE_PROMPT_ID, "clip2"),
)
_DECODED_AFTER_BASE: Edges = (
    (MODEL_LOADER_ID, "vae", DECODE_ID, "vae"),
    (DENOISE_ID, "latents", DECODE_ID, "latents"),
)
_REFINER_EDGES: Edges = (
    (REFINER_LOADER_ID, "clip2", REFINER_POSITIVE_PROMPT_ID, "clip2"),
    (REFINER_LOADER_ID, "clip2", REFINER_NEGATIVE_PROMPT_ID, "clip2"),
    (REFINER_LOADER_ID, "unet", REFINER_DENOISE_ID, "unet"),
    (REFINER_POSITIVE_PROMPT_ID, "conditioning", REFINER_DENOISE_ID, "positive_conditioning"),
    (REFINER_NEGATIVE_PROMPT_ID, "conditioning", REFINER_DENOISE_ID, "negative_conditioning"),
    # The base's latents alone, not noised again: diffusers' base+refiner recipe.
    (DENOISE_ID, "latents", REFINER_DENOISE_ID, "latents"),
    (REFINER_LOADER_ID, "vae", DECODE_ID, "vae"),
    (REFINER_DENOISE_ID, "latents", DECODE_ID, "latents"),
)


class RefinerNeedsSDXLError(NodeloomError):
    """A refiner was asked for with a main model that is not an SDXL base."""


def text_to_image_graph(
    model: ModelIdentifierField | Mapping[str, Any],
    prompt: str,
    negative_prompt: str = "",
    width: int = 512,
    height: int = 512,
    steps: int = 30,
    cfg_scale: float = 7.5,
    scheduler: SCHEDULER_NAME_VALUES = "euler",
    seed: int = 0,
    board_id: str | None = None,
    refiner: ModelIdentifierField | Mapping[str, Any] | None = None,
    refiner_start: float = 0.8,
) -> Graph:
    """main_model_loader → compel (positive, negative) and noise → denoise_latents → l2i, the graph InvokeAI's
    linear UI builds for SD1 text-to-image, with its `core_metadata` node; for an SDXL base, sdxl_model_loader and
    sdxl_compel_prompt (size conditioning at the image's size) instead. With an SDXL `refiner`, the base denoises
    up to `refiner_start` and the refiner from there, with the same steps, CFG scale and scheduler. `model` and
    `refiner` are main models' identifiers, or their JSON; the image goes on the board `board_id`, if given."""
    model = ModelIdentifierField.model_validate(model)
    refiner = None if refiner is None else ModelIdentifierField.model_validate(refiner)
    sdxl = model.base == BaseModelType.StableDiffusionXL
    if refiner is not None and not sdxl:
        raise RefinerNeedsSDXLError(f"A refiner refines an SDXL base, and '{model.name}' is a {model.base.value} model")
    settings = {"steps": steps, "cfg_scale": cfg_scale, "scheduler": scheduler}
    metadata = CoreMetadataInvocation(
        id=METADATA_ID,
        generation_mode="sdxl_txt2img" if sdxl else "txt2img",
        model=model,
        positive_prompt=prompt,
        negative_prompt=negative_prompt,
        width=width,
        height=height,
        seed=seed,
        **settings,
    )
    nodes: list[BaseInvocation] = [
        NoiseInvocation(id=NOISE_ID, seed=seed, width=width, height=height),
        DenoiseLatentsInvocation(id=DENOISE_ID, denoising_end=1.0 if refiner is None else refiner_start, **settings),
        LatentsToImageInvocation(id=DECODE_ID, board=None if board_id is None else BoardField(board_id=board_id)),
        metadata,
    ]
    edges = _EDGES + (_SDXL_EDGES if sdxl else ()) + (_DECODED_AFTER_BASE if refiner is None else _REFINER_EDGES)
    if sdxl:
        sizes = {"original_width": width, "original_height": height, "target_width": width, "target_height": height}
        nodes += [
            SDXLModelLoaderInvocation(id=MODEL_LOADER_ID, model=model),
            SDXLCompelPromptInvocation(id=POSITIVE_PROMPT_ID, prompt=prompt, **sizes),
            SDXLCompelPromptInvocation(id=NEGATIVE_PROMPT_ID, prompt=negative_prompt, **sizes),
        ]
    else:
        nodes += [
            MainModelLoaderInvocation(id=MODEL_LOADER_ID, model=model),
            CompelInvocation(id=POSITIVE_PROMPT_ID, prompt=prompt),
            CompelInvocation(id=NEGATIVE_PROMPT_ID, prompt=negative_prompt),
        ]
    if refiner is not None:
        sizes = {"original_width": width, "original_height": height}
        scores = (REFINER_POSITIVE_AESTHETIC_SCORE, REFINER_NEGATIVE_AESTHETIC_SCORE)
        nodes += [
            SDXLRefinerModelLoaderInvocation(id=REFINER_LOADER_ID, model=refiner),
            SDXLRefinerCompelPromptInvocation(
                id=REFINER_POSITIVE_PROMPT_ID, style=prompt, aesthetic_score=scores[0], **sizes
            ),
            SDXLRefinerCompelPromptInvocation(
                id=REFINER_NEGATIVE_PROMPT_ID, style=negative_prompt, aesthetic_score=scores[1], **sizes
            ),
            DenoiseLatentsInvocation(id=REFINER_DENOISE_ID, denoising_start=refiner_start, **settings),
        ]
        metadata.refiner_model = refiner
        metadata.refiner_start = refiner_start
        metadata.refiner_steps = steps
        metadata.refiner_cfg_scale = cfg_scale
        metadata.refiner_scheduler = scheduler
        metadata.refiner_positive_aesthetic_score, metadata.refiner_negative_aesthetic_score = scores
    graph = Graph()
    for node in nodes:
        graph.add_node(node)
    for source, source_field, destination, destination_field in edges:
        graph.add_edge(Edge(EdgeConnection(source, source_field), EdgeConnection(destination, destination_field)))
    return graph
