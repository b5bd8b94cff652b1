"""The diffusion nodes InvokeAI's SD-1.5 graphs use, and SDXL's LoRA collection loader, checked against InvokeAI's
inputs, defaults and outputs.

Every input of InvokeAI's node is here, those of features nodeloom does not implement yet too: at their defaults
they validate, so the graphs InvokeAI's UI sends are accepted (see `tests/app/api/test_invokeai_graphs.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.app.invocations.conftest import CheckInvokeAINode

LATENTS = {"latents", "width", "height"}
VAE_OPTIONS = {"tiled": False, "tile_size": 0, "fp32": False}

INVOKEAI_DIFFUSION_NODES: list[tuple[str, dict[str, Any], str, set[str]]] = [
    ("main_model_loader", {"model": None}, "model_loader_output", {"unet", "clip", "vae"}),
    ("clip_skip", {"clip": None, "skipped_layers": 0}, "clip_skip_output", {"clip"}),
    ("lora_selector", {"lora": None, "weight": 0.75}, "lora_selector_output", {"lora"}),
    ("lora_collection_loader", {"loras": None, "unet": None, "clip": None}, "lora_loader_output", {"unet", "clip"}),
    ("lora_loader", {"lora": None, "weight": 0.75, "unet": None, "clip": None}, "lora_loader_output", {"unet", "clip"}),
    (
        "sdxl_lora_collection_loader",
        {"loras": None, "unet": None, "clip": None, "clip2": None},
        "sdxl_lora_loader_output",
        {"unet", "clip", "clip2"},
    ),
    ("compel", {"prompt": "", "clip": None, "mask": None}, "conditioning_output", {"conditioning"}),
    (
        "noise",
        {"noise_type": "SD", "seed": 0, "width": 512, "height": 512, "use_cpu": True},
        "noise_output",
        {"noise", "width", "height"},
    ),
    ("i2l", {"image": None, "vae": None, **VAE_OPTIONS, "color_compensation": "None"}, "latents_output", LATENTS),
    (
        "l2i",
        {"latents": None, "vae": None, **VAE_OPTIONS, "metadata": None, "board": None},
        "image_output",
        {"image", "width", "height"},
    ),
    (
        "denoise_latents",
        {
            "positive_conditioning": None,
            "negative_conditioning": None,
            "noise": None,
            "steps": 10,
            "cfg_scale": 7.5,
            "denoising_start": 0.0,
            "denoising_end": 1.0,
            "scheduler": "euler",
            "unet": None,
            "control": None,
            "ip_adapter": None,
            "t2i_adapter": None,
            "cfg_rescale_multiplier": 0,
            "hidiffusion": False,
            "hidiffusion_raunet": True,
            "hidiffusion_window_attn": True,
            "hidiffusion_t1_ratio": 0.4,
            "hidiffusion_t2_ratio": 0.0,
            "latents": None,
            "denoise_mask": None,
        },
        "latents_output",
        LATENTS,
    ),
]


@pytest.mark.parametrize("spec", INVOKEAI_DIFFUSION_NODES, ids=lambda spec: spec[0])
def test_diffusion_node_matches_invokeai(
    spec: tuple[str, dict[str, Any], str, set[str]], check_invokeai_node: CheckInvokeAINode
) -> None:
    check_invokeai_node(*spec)
