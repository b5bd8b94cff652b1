"""Textual-inversion embeddings in prompts, against diffusers' `load_textual_inversion` on the tiny SD-1 pipeline:
the same prompt embeddings, and the cached tokenizer and text encoder unchanged after."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from safetensors.torch import save_file
from tests.diffusion_helpers import load_pipeline

from nodeloom.backend.model_manager.model_files import load_state_dict
from nodeloom.backend.stable_diffusion.prompts import encode_prompt
from nodeloom.backend.stable_diffusion.textual_inversion import (
    apply_embeddings,
    embedding_names,
    embedding_vectors,
)

if TYPE_CHECKING:
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline

PROMPT = "a <ink-style> cab, (<dots>)1.2"


def vectors(count: int, seed: int) -> torch.Tensor:
    return torch.randn((count, 32), generator=torch.Generator().manual_seed(seed))


def test_the_prompt_embeddings_are_diffusers_load_textual_inversion_ones(
    pipeline: StableDiffusionPipeline, tiny_sd_model: Path
) -> None:
    ink, dots = vectors(3, 0), vectors(1, 1)
    reference = load_pipeline(tiny_sd_model)
    reference.load_textual_inversion({"<ink-style>": ink}, token="<ink-style>")
    reference.load_textual_inversion({"<dots>": dots}, token="<dots>")
    plain_prompt = "a <ink-style> cab, <dots>"
    expected = reference.encode_prompt(plain_prompt, "cpu", 1, False)[0]

    tokenizer, text_encoder = pipeline.tokenizer, pipeline.text_encoder
    vocabulary = dict(tokenizer.get_vocab())
    token_embedding = text_encoder.get_input_embeddings()
    rows = token_embedding.weight.detach().clone()
    before = encode_prompt(tokenizer, text_encoder, PROMPT).embeds
    with apply_embeddings(tokenizer, text_encoder, plain_prompt, {"ink-style": ink, "dots": dots}) as (ti, prompt):
        assert torch.equal(encode_prompt(ti, text_encoder, prompt).embeds, expected)
    with apply_embeddings(tokenizer, text_encoder, PROMPT, {"ink-style": ink, "dots": dots}) as (ti, prompt):
        weighted = encode_prompt(ti, text_encoder, prompt).embeds
    assert weighted.shape == expected.shape and not torch.equal(weighted, expected)

    assert tokenizer.get_vocab() == vocabulary
    assert text_encoder.get_input_embeddings() is token_embedding
    assert torch.equal(token_embedding.weight, rows)
    assert torch.equal(encode_prompt(tokenizer, text_encoder, PROMPT).embeds, before)


def test_an_embedding_for_another_width_is_refused_and_nothing_changes(pipeline: StableDiffusionPipeline) -> None:
    token_embedding = pipeline.text_encoder.get_input_embeddings()
    wide = torch.zeros((2, 768))
    refused = pytest.raises(ValueError, match="'ink' has vectors 768 wide, and the text encoder's tokens are 32 wide")
    with refused, apply_embeddings(pipeline.tokenizer, pipeline.text_encoder, "<ink>", {"ink": wide}):
        pass
    assert pipeline.text_encoder.get_input_embeddings() is token_embedding


def test_names_are_read_between_angle_brackets_once_each() -> None:
    assert embedding_names("<ink-style> and <my style.v2,b_w>, <ink-style> but not <a(b)> or <>") == [
        "ink-style",
        "my style.v2,b_w",
    ]


def test_each_file_layout_gives_its_vectors(tmp_path: Path) -> None:
    ink = vectors(2, 0)
    save_file({"emb_params": ink}, tmp_path / "a1111.safetensors")
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": ink}, "name": "ink"}, tmp_path / "a1111.pt")
    torch.save({"<ink>": ink[0]}, tmp_path / "learned_embeds.bin")
    save_file({"clip_l": ink, "clip_g": 2 * ink}, tmp_path / "xl.safetensors")
    for name in ("a1111.safetensors", "a1111.pt"):
        assert torch.equal(embedding_vectors(load_state_dict(tmp_path / name), "clip_l"), ink)
    assert torch.equal(embedding_vectors(load_state_dict(tmp_path / "learned_embeds.bin"), "clip_l"), ink[:1])
    two_parts = load_state_dict(tmp_path / "xl.safetensors")
    assert torch.equal(embedding_vectors(two_parts, "clip_l"), ink)
    assert torch.equal(embedding_vectors(two_parts, "clip_g"), 2 * ink)
    with pytest.raises(ValueError, match="The SDXL embedding has no clip_g vectors"):
        embedding_vectors({"clip_l": ink}, "clip_g")
