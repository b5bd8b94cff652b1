"""Probing LoRAs of each kind and textual-inversion embeddings of each layout: their type, and their base from
their shapes and names, read from the file's header (or, for a pickle, its tensors through the weights-only
unpickler)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tests.tiny_model import LORA_KINDS, SD1_TEXT_WIDTH, LoRAKind, LoRALayerSpec, write_lora_of_kind

from nodeloom.backend.model_manager.errors import InvalidModelError
from nodeloom.backend.model_manager.probe import ProbedModel, is_model_folder, probe_model
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelFormat, ModelType

SDXL_TEXT_WIDTH = 2048

# A real model's cross-attention key projection, by which the probe tells the base.
SD1_LAYERS = (
    LoRALayerSpec(
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k",
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
        (320, SD1_TEXT_WIDTH),
    ),
)
SDXL_LAYERS = (
    LoRALayerSpec(
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k",
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
        (640, SDXL_TEXT_WIDTH),
    ),
)


def lora(base: BaseModelType) -> ProbedModel:
    return ProbedModel(ModelType.LoRA, ModelFormat.LyCORIS, base)


def embedding(base: BaseModelType) -> ProbedModel:
    return ProbedModel(ModelType.TextualInversion, ModelFormat.EmbeddingFile, base)


@pytest.mark.parametrize("kind", LORA_KINDS)
def test_each_kind_of_lora_is_told_sd1_or_sdxl_by_its_cross_attention_width(tmp_path: Path, kind: LoRAKind) -> None:
    sd1 = write_lora_of_kind(tmp_path / "sd1.safetensors", kind, SD1_LAYERS)
    sdxl = write_lora_of_kind(tmp_path / "sdxl.safetensors", kind, SDXL_LAYERS)
    assert probe_model(sd1) == lora(BaseModelType.StableDiffusion1)
    assert probe_model(sdxl) == lora(BaseModelType.StableDiffusionXL)


@pytest.mark.parametrize("name", ["lora_te2_text_model_encoder_layers_0_mlp_fc1", "text_encoder_2.text_projection"])
def test_a_lora_of_a_second_text_encoder_is_sdxl(tmp_path: Path, name: str) -> None:
    # Only LoKr factors, whose input width (4 * 8 = 32) matches no base: the second text encoder tells.
    tensors = {f"{name}.lokr_w1": torch.ones((4, 4)), f"{name}.lokr_w2": torch.ones((8, 8))}
    save_file(tensors, tmp_path / "te2.safetensors")
    assert probe_model(tmp_path / "te2.safetensors") == lora(BaseModelType.StableDiffusionXL)


def test_a_sd1_text_encoder_lora_is_told_by_its_hidden_size(tmp_path: Path) -> None:
    name = "lora_te_text_model_encoder_layers_0_mlp_fc1"
    save_file({f"{name}.hada_w1_b": torch.ones((2, SD1_TEXT_WIDTH))}, tmp_path / "te.safetensors")
    assert probe_model(tmp_path / "te.safetensors") == lora(BaseModelType.StableDiffusion1)


def test_lora_shaped_names_of_no_model_are_no_lora(tmp_path: Path) -> None:
    # PEFT's names without diffusers' model prefix say nothing of which model they patch.
    save_file({"base_model.model.to_k.lora_A.weight": torch.ones((2, 4))}, tmp_path / "adapter.safetensors")
    with pytest.raises(InvalidModelError, match="in no layout nodeloom knows"):
        probe_model(tmp_path / "adapter.safetensors")


def test_each_embedding_layout_is_recognised_with_its_base(tmp_path: Path) -> None:
    save_file({"emb_params": torch.zeros(3, SD1_TEXT_WIDTH)}, tmp_path / "a1111.safetensors")
    save_file({"<ink>": torch.zeros(SD1_TEXT_WIDTH)}, tmp_path / "diffusers.safetensors")
    save_file({"clip_l": torch.zeros(2, 768), "clip_g": torch.zeros(2, 1280)}, tmp_path / "xl.safetensors")
    torch.save(
        {"string_to_token": {"*": 265}, "string_to_param": {"*": torch.zeros(2, 1024)}, "name": "ink", "step": 3},
        tmp_path / "a1111.pt",
    )
    torch.save({"<ink>": torch.zeros(1, SD1_TEXT_WIDTH)}, tmp_path / "learned_embeds.bin")
    assert probe_model(tmp_path / "a1111.safetensors") == embedding(BaseModelType.StableDiffusion1)
    assert probe_model(tmp_path / "diffusers.safetensors") == embedding(BaseModelType.StableDiffusion1)
    assert probe_model(tmp_path / "xl.safetensors") == embedding(BaseModelType.StableDiffusionXL)
    assert probe_model(tmp_path / "a1111.pt") == embedding(BaseModelType.StableDiffusion2)
    assert probe_model(tmp_path / "learned_embeds.bin") == embedding(BaseModelType.StableDiffusion1)


def test_a_folder_diffusers_saved_an_embedding_in_is_one_model(tmp_path: Path) -> None:
    (tmp_path / "ink").mkdir()
    torch.save({"<ink>": torch.zeros(SD1_TEXT_WIDTH)}, tmp_path / "ink" / "learned_embeds.bin")
    assert is_model_folder(tmp_path / "ink")
    assert probe_model(tmp_path / "ink") == ProbedModel(
        ModelType.TextualInversion, ModelFormat.EmbeddingFolder, BaseModelType.StableDiffusion1
    )
    (tmp_path / "odd").mkdir()
    save_file({"a.weight": torch.zeros(2), "b.weight": torch.zeros(2)}, tmp_path / "odd" / "learned_embeds.safetensors")
    with pytest.raises(InvalidModelError, match=r"learned_embeds\.safetensors holds no textual-inversion embedding"):
        probe_model(tmp_path / "odd")


def test_an_embedding_of_an_unknown_width_asks_for_a_base(tmp_path: Path) -> None:
    save_file({"<ink>": torch.zeros(2, 32)}, tmp_path / "tiny.safetensors")
    probed = probe_model(tmp_path / "tiny.safetensors")
    assert (probed.type, probed.base, probed.unknown_base_reason) == (
        ModelType.TextualInversion,
        None,
        "the embedding's width is 32, which is none of 768 (sd-1), 1024 (sd-2), 2048 (sdxl)",
    )
