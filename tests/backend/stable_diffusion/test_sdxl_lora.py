"""LoRAs on SDXL's second text encoder, in kohya's and PEFT's names, including its projection beside
`text_model`: added while inside, the encoder restored exactly after."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.tiny_model import TINY_CROSS_ATTENTION_DIM

from nodeloom.backend.stable_diffusion.lora import apply_loras

RANK = 2


@pytest.fixture(scope="module")
def text_encoder_2(tiny_sdxl_models: tuple[Path, Path]) -> torch.nn.Module:
    from transformers import CLIPTextModelWithProjection

    model: torch.nn.Module = CLIPTextModelWithProjection.from_pretrained(
        tiny_sdxl_models[0] / "text_encoder_2", local_files_only=True
    )
    return model


def lora(names: list[str], down: str, up: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    width = TINY_CROSS_ATTENTION_DIM
    tensors: dict[str, torch.Tensor] = {}
    for name in names:
        tensors[f"{name}.{down}.weight"] = torch.randn((RANK, width), generator=generator)
        tensors[f"{name}.{up}.weight"] = torch.randn((width, RANK), generator=generator)
    return tensors


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


KOHYA = ["lora_te2_text_model_encoder_layers_0_self_attn_q_proj", "lora_te2_text_projection"]
PEFT = ["text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj", "text_encoder_2.text_projection"]


@pytest.mark.parametrize(("names", "down", "up"), [(KOHYA, "lora_down", "lora_up"), (PEFT, "lora_A", "lora_B")])
def test_a_lora_patches_the_second_text_encoder_and_its_projection(
    text_encoder_2: torch.nn.Module, names: list[str], down: str, up: str
) -> None:
    before = weights(text_encoder_2)
    with apply_loras(text_encoder_2, [(lora(names, down, up), 1.0)], "text_encoder_2"):
        changed = {name for name, tensor in weights(text_encoder_2).items() if not torch.equal(tensor, before[name])}
    assert changed == {"text_projection.weight", "text_model.encoder.layers.0.self_attn.q_proj.weight"}
    assert all(torch.equal(tensor, before[name]) for name, tensor in weights(text_encoder_2).items())


def test_the_first_text_encoders_lora_leaves_the_second_alone(text_encoder_2: torch.nn.Module) -> None:
    before = weights(text_encoder_2)
    names = ["lora_te1_text_model_encoder_layers_0_self_attn_q_proj"]
    with apply_loras(text_encoder_2, [(lora(names, "lora_down", "lora_up"), 1.0)], "text_encoder_2"):
        assert all(torch.equal(tensor, before[name]) for name, tensor in weights(text_encoder_2).items())
