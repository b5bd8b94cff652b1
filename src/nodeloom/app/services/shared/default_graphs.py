"""Ready-made graphs: text-to-image on a Stable Diffusion 1.x/2.x main model.

The graphs' node ids are fixed, so that a batch can vary a field by its node path: the seed is the `noise`
node's `seed` (`{"node_path": "noise", "field_name": "seed", "items": [...]}`), and a `rand_int` node may be
connected to it instead. The settings are also recorded by a `core_metadata` node, embedded in the image so that
it can be made again (`nodeloom images recall`); a batch that varies a setting zips the item list of the
`core_metadata` field of the same name with it, as InvokeAI's UI does, so each image records its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodeloom.app.invocations.compel import CompelInvocation
from nodeloom.app.invocations.denoise_latents import DenoiseLatentsInvocation
from nodeloom.app.invocations.fields import BoardField, ModelIdentifierField
from nodeloom.app.invocations.latents import LatentsToImageInvocation
from nodeloom.app.invocations.metadata import CoreMetadataInvocation
from nodeloom.app.invocations.model import MainModelLoaderInvocation
from nodeloom.app.invocations.noise import NoiseInvocation
from nodeloom.app.services.shared.graph import Graph
from nodeloom.app.services.shared.graph_common import Edge, EdgeConnection
from nodeloom.backend.stable_diffusion.schedulers import SCHEDULER_NAME_VALUES

MODEL_LOADER_ID = "model_loader"
POSITIVE_PROMPT_ID = "positive_prompt"
NEGATIVE_PROMPT_ID = "negative_prompt"
NOISE_ID = "noise"
DENOISE_ID = "denoise_latents"
DECODE_ID = "l2i"
METADATA_ID = "core_metadata"
"""The node ids of the text-to-image graph; `l2i` saves the image, with the settings `core_metadata` records."""

_EDGES = (
    (MODEL_LOADER_ID, "clip", POSITIVE_PROMPT_ID, "clip"),
    (MODEL_LOADER_ID, "clip", NEGATIVE_PROMPT_ID, "clip"),
    (MODEL_LOADER_ID, "unet", DENOISE_ID, "unet"),
    (MODEL_LOADER_ID, "vae", DECODE_ID, "vae"),
    (POSITIVE_PROMPT_ID, "conditioning", DENOISE_ID, "positive_conditioning"),
    (NEGATIVE_PROMPT_ID, "conditioning", DENOISE_ID, "negative_conditioning"),
    (NOISE_ID, "noise", DENOISE_ID, "noise"),
    (DENOISE_ID, "latents", DECODE_ID, "latents"),
    (METADATA_ID, "metadata", DECODE_ID, "metadata"),
)


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
) -> Graph:
    """main_model_loader → compel (positive, negative) and noise → denoise_latents → l2i, the graph InvokeAI's
    linear UI builds for SD1 text-to-image, with its `core_metadata` node. `model` is a main model's identifier, or
    its JSON; the image goes on the board `board_id`, if given."""
    model = ModelIdentifierField.model_validate(model)
    graph = Graph()
    for node in (
        MainModelLoaderInvocation(id=MODEL_LOADER_ID, model=model),
        CompelInvocation(id=POSITIVE_PROMPT_ID, prompt=prompt),
        CompelInvocation(id=NEGATIVE_PROMPT_ID, prompt=negative_prompt),
        NoiseInvocation(id=NOISE_ID, seed=seed, width=width, height=height),
        DenoiseLatentsInvocation(id=DENOISE_ID, steps=steps, cfg_scale=cfg_scale, scheduler=scheduler),
        LatentsToImageInvocation(id=DECODE_ID, board=None if board_id is None else BoardField(board_id=board_id)),
        CoreMetadataInvocation(
            id=METADATA_ID,
            generation_mode="txt2img",
            model=model,
            positive_prompt=prompt,
            negative_prompt=negative_prompt,
            width=width,
            height=height,
            steps=steps,
            cfg_scale=cfg_scale,
            scheduler=scheduler,
            seed=seed,
        ),
    ):
        graph.add_node(node)
    for source, source_field, destination, destination_field in _EDGES:
        graph.add_edge(Edge(EdgeConnection(source, source_field), EdgeConnection(destination, destination_field)))
    return graph
