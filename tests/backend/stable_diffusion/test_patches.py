"""Seamless convolutions and LoRA weights: applied while inside, and the cached model restored exactly after."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import torch

from nodeloom.backend.stable_diffusion.lora import apply_loras
from nodeloom.backend.stable_diffusion.seamless import seamless

if TYPE_CHECKING:
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline


def unet_output(pipeline: StableDiffusionPipeline) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn((1, 4, 8, 8), generator=generator)
    text = torch.randn((1, 77, 32), generator=generator)
    with torch.no_grad():
        output: torch.Tensor = pipeline.unet(sample, 10, encoder_hidden_states=text, return_dict=False)[0]
    return output


def conv_state(model: torch.nn.Module) -> list[tuple[str, str, bool]]:
    """Each Conv2d's padding mode and whether it has an instance-level forward (a patch)."""
    return [
        (name, layer.padding_mode, "_conv_forward" in vars(layer))
        for name, layer in model.named_modules()
        if isinstance(layer, torch.nn.Conv2d)
    ]


def test_seamless_wraps_the_convolutions_only_while_inside(pipeline: StableDiffusionPipeline) -> None:
    before_state = conv_state(pipeline.unet) + conv_state(pipeline.vae)
    before = unet_output(pipeline)
    with seamless([pipeline.unet, pipeline.vae], ["x", "y"]):
        patched_state = conv_state(pipeline.unet) + conv_state(pipeline.vae)
        assert any(patched for _, _, patched in patched_state)
        assert not torch.equal(unet_output(pipeline), before)
    assert conv_state(pipeline.unet) + conv_state(pipeline.vae) == before_state
    assert torch.equal(unet_output(pipeline), before)


def test_seamless_pads_one_axis_around_and_the_other_with_zeros() -> None:
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    torch.nn.init.ones_(conv.weight)
    image = torch.zeros((1, 1, 4, 4))
    image[..., 0, 0] = 1.0  # top left: reaches the right column when x wraps, the bottom row when y wraps
    with seamless([conv], ["x"]), torch.no_grad():
        wrapped = conv(image)
    assert wrapped[0, 0, 0, 3] == 1.0 and wrapped[0, 0, 3, 0] == 0.0
    with seamless([conv], []), torch.no_grad():
        assert conv(image)[0, 0, 0, 3] == 0.0


def test_seamless_undoes_its_patch_when_the_block_raises(pipeline: StableDiffusionPipeline) -> None:
    before_state = conv_state(pipeline.vae)
    with pytest.raises(RuntimeError), seamless([pipeline.vae], ["y"]):
        raise RuntimeError("the node failed")
    assert conv_state(pipeline.vae) == before_state


def tiny_lora(alpha: float | None = None) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    lora = {
        f"{name}.lora_down.weight": torch.randn((2, 32), generator=generator),
        f"{name}.lora_up.weight": torch.randn((32, 2), generator=generator),
        # diffusers/PEFT naming, on a conv layer
        "unet.conv_in.lora_A.weight": torch.randn((2, 4, 3, 3), generator=generator),
        "unet.conv_in.lora_B.weight": torch.randn((32, 2, 1, 1), generator=generator),
    }
    if alpha is not None:
        lora[f"{name}.alpha"] = torch.tensor(alpha)
    return lora


def test_a_lora_adds_its_weights_and_they_are_taken_off_exactly(pipeline: StableDiffusionPipeline) -> None:
    weights = {name: value.clone() for name, value in pipeline.unet.state_dict().items()}
    before = unet_output(pipeline)
    lora = tiny_lora(alpha=1.0)
    with apply_loras(pipeline.unet, [(lora, 0.5)], "unet"):
        to_k = pipeline.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight
        down = lora["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"]
        up = lora["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight"]
        original = weights["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"]
        # alpha 1 over rank 2, at weight 0.5
        assert torch.allclose(to_k, original + 0.25 * (up @ down), atol=1e-6)
        assert not torch.equal(unet_output(pipeline), before)
    assert all(torch.equal(value, weights[name]) for name, value in pipeline.unet.state_dict().items())
    assert torch.equal(unet_output(pipeline), before)


def test_a_lora_for_other_layers_is_refused_and_nothing_stays_patched(pipeline: StableDiffusionPipeline) -> None:
    weights = {name: value.clone() for name, value in pipeline.unet.state_dict().items()}
    lora = {**tiny_lora(), "lora_unet_no_such_layer.lora_down.weight": torch.ones((2, 2))}
    refused = pytest.raises(ValueError, match="'lora_unet_no_such_layer' matches no layer of the unet")
    with refused, apply_loras(pipeline.unet, [(lora, 1.0)], "unet"):
        pass
    assert all(torch.equal(value, weights[name]) for name, value in pipeline.unet.state_dict().items())


def test_a_text_encoder_lora_uses_the_text_model_names(pipeline: StableDiffusionPipeline) -> None:
    name = "lora_te_text_model_encoder_layers_1_mlp_fc1"
    lora = {f"{name}.lora_down.weight": torch.ones((1, 32)), f"{name}.lora_up.weight": torch.ones((37, 1))}
    fc1 = pipeline.text_encoder.get_submodule("encoder.layers.1.mlp.fc1")
    before = fc1.weight.clone()
    with apply_loras(pipeline.text_encoder, [(lora, 2.0)], "text_encoder"):
        assert torch.equal(fc1.weight, before + 2.0)
    assert torch.equal(fc1.weight, before)
