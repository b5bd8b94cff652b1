"""Prompts through compel, the VAE both ways and previews, against diffusers on the tiny model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image

from nodeloom.backend.stable_diffusion.preview import preview_image
from nodeloom.backend.stable_diffusion.prompts import TextConditioning, encode_prompt
from nodeloom.backend.stable_diffusion.vae import decode_latents, encode_image, image_to_tensor, mask_to_tensor

if TYPE_CHECKING:
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline


def test_an_unweighted_prompt_gives_the_pipelines_embeddings(pipeline: StableDiffusionPipeline) -> None:
    positive, negative = pipeline.encode_prompt("a cab", "cpu", 1, True, "bad")
    assert torch.equal(encode_prompt(pipeline.tokenizer, pipeline.text_encoder, "a cab").embeds, positive)
    assert torch.equal(encode_prompt(pipeline.tokenizer, pipeline.text_encoder, "bad").embeds, negative)


def test_weighting_syntax_changes_the_embeddings(pipeline: StableDiffusionPipeline) -> None:
    plain = encode_prompt(pipeline.tokenizer, pipeline.text_encoder, "a cab").embeds
    weighted = encode_prompt(pipeline.tokenizer, pipeline.text_encoder, "a (cab)1.5").embeds
    assert plain.shape == weighted.shape
    assert not torch.equal(plain, weighted)


def test_clip_skip_is_the_pipelines_and_puts_the_layers_back(pipeline: StableDiffusionPipeline) -> None:
    # What the pipeline's `clip_skip=1` computes (its own code reaches `text_model`, gone in transformers 5).
    text_encoder = pipeline.text_encoder
    ids = pipeline.tokenizer("a cab", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        expected = text_encoder.final_layer_norm(hidden)
    layers = len(text_encoder.encoder.layers)
    skipped = encode_prompt(pipeline.tokenizer, pipeline.text_encoder, "a cab", skipped_layers=1).embeds
    assert torch.equal(skipped, expected)
    assert len(pipeline.text_encoder.encoder.layers) == layers
    with pytest.raises(ValueError, match="Cannot skip 2 layers of a text encoder that has 2"):
        encode_prompt(pipeline.tokenizer, pipeline.text_encoder, "a cab", skipped_layers=2)


def test_conditioning_is_stored_as_tensors_in_a_dict() -> None:
    conditioning = TextConditioning(embeds=torch.ones((1, 77, 8)))
    assert torch.equal(TextConditioning.from_stored(conditioning.to_stored()).embeds, conditioning.embeds)
    with pytest.raises(ValueError, match="not text conditioning"):
        TextConditioning.from_stored({"embeds": torch.ones(3)})


def test_decoding_gives_the_pipelines_image(pipeline: StableDiffusionPipeline) -> None:
    latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        decoded = pipeline.vae.decode(latents / pipeline.vae.config.scaling_factor, return_dict=False)[0]
    expected = pipeline.image_processor.postprocess(decoded, output_type="pil")[0]
    assert np.array_equal(np.asarray(decode_latents(pipeline.vae, latents)), np.asarray(expected))


def test_images_are_cut_to_whole_latents_and_encode_the_same_every_time(pipeline: StableDiffusionPipeline) -> None:
    image = Image.radial_gradient("L").resize((21, 18)).convert("RGB")
    tensor = image_to_tensor(image)
    assert tensor.shape == (1, 3, 16, 16)
    assert tensor.min() >= -1 and tensor.max() <= 1
    assert torch.equal(encode_image(pipeline.vae, tensor), encode_image(pipeline.vae, tensor))
    assert encode_image(pipeline.vae, tensor).shape == (1, 4, 8, 8)
    mask = mask_to_tensor(Image.new("L", (17, 9), 255))
    assert mask.shape == (1, 1, 8, 16)
    assert torch.equal(mask, torch.ones_like(mask))


def test_a_preview_is_an_rgb_image_the_size_of_the_latents() -> None:
    preview = preview_image(torch.zeros((1, 4, 6, 10)))
    assert (preview.mode, preview.size) == ("RGB", (10, 6))
    assert preview.getpixel((0, 0)) == (128, 128, 128)
