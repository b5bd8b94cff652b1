"""LoRAs of each kind (LoRA, LoHa, LoKr, PEFT, full differences) on the tiny SD-1 and SDXL models: each patched weight
is the original plus the node's weight times the change the layer's math gives, computed here by other means than
the code under test, and the models are restored bit for bit after."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from tests.tiny_model import (
    LORA_KINDS,
    TINY_SD1_LORA_LAYERS,
    TINY_SDXL_LORA_LAYERS,
    LoRAKind,
    LoRALayerSpec,
    lora_tensors,
)

from nodeloom.backend.stable_diffusion.lora import LoRA, apply_loras
from nodeloom.backend.stable_diffusion.lora_keys import DIFFUSERS_PREFIXES, LoRATarget, lora_target

if TYPE_CHECKING:
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline

Models = dict[LoRATarget, torch.nn.Module]


@pytest.fixture(scope="module")
def sd1_models(pipeline: StableDiffusionPipeline) -> Models:
    return {"unet": pipeline.unet, "text_encoder": pipeline.text_encoder}


@pytest.fixture(scope="module")
def sdxl_models(tiny_sdxl_models: tuple[Path, Path]) -> Models:
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline

    base = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_models[0], local_files_only=True)
    return {"unet": base.unet, "text_encoder": base.text_encoder, "text_encoder_2": base.text_encoder_2}


def tucker(core: torch.Tensor, out_factor: torch.Tensor, in_factor: torch.Tensor) -> torch.Tensor:
    """`sum over a, b of core[a, b] * out_factor[a, o] * in_factor[b, i]`, by broadcasting."""
    terms = core[:, :, None, None] * out_factor[:, None, :, None, None, None] * in_factor[None, :, None, :, None, None]
    return terms.sum((0, 1))


def kronecker(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The Kronecker product of two matrices (or a matrix and a kernel), block by block."""
    rows, columns = first.shape[0] * second.shape[0], first.shape[1] * second.shape[1]
    blocks = first[:, None, :, None] * second[None, :, None, :] if second.dim() == 2 else None
    if blocks is None:
        blocks = first[:, None, :, None, None, None] * second[None, :, None, :, :, :]
    return blocks.reshape(rows, columns, *second.shape[2:])


def expected_change(kind: LoRAKind, parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """The change to a linear layer's weight at weight 1, from the formulas of each kind."""
    alpha_over_rank = {
        "lora": lambda: parts["alpha"] / parts["lora_down.weight"].shape[0],
        "loha": lambda: parts["alpha"] / parts["hada_w1_b"].shape[0],
        "lokr": lambda: parts["alpha"] / parts["lokr_w2_b"].shape[0],
    }
    if kind == "peft":
        return parts["lora_B.weight"] @ parts["lora_A.weight"]
    if kind == "lora":
        return alpha_over_rank["lora"]() * (parts["lora_up.weight"] @ parts["lora_down.weight"])
    if kind == "loha":
        products = [parts[f"hada_w{i}_a"] @ parts[f"hada_w{i}_b"] for i in (1, 2)]
        return alpha_over_rank["loha"]() * products[0] * products[1]
    if kind == "lokr":
        return alpha_over_rank["lokr"]() * kronecker(parts["lokr_w1"], parts["lokr_w2_a"] @ parts["lokr_w2_b"])
    return parts["diff"]


def parts_of(tensors: Mapping[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    return {key[len(name) + 1 :]: tensor for key, tensor in tensors.items() if key.startswith(f"{name}.")}


def module_of(models: Models, layer: LoRALayerSpec) -> tuple[LoRATarget, str]:
    """The model a layer is in and its path there, whether it keeps its text encoder under `text_model` or not."""
    target = lora_target(layer.diffusers)
    assert target is not None
    path = layer.diffusers.removeprefix(DIFFUSERS_PREFIXES[target])
    names = dict(models[target].named_modules())
    return target, path if path in names else path.removeprefix("text_model.")


def snapshot(models: Models) -> dict[tuple[LoRATarget, str], torch.Tensor]:
    return {(target, name): t.clone() for target, model in models.items() for name, t in model.state_dict().items()}


@contextmanager
def applied(models: Models, loras: list[LoRA]) -> Iterator[None]:
    with ExitStack() as stack:
        for target, model in models.items():
            stack.enter_context(apply_loras(model, loras, target))
        yield


def changed(models: Models, before: dict[tuple[LoRATarget, str], torch.Tensor]) -> set[tuple[LoRATarget, str]]:
    return {name for name, tensor in snapshot(models).items() if not torch.equal(tensor, before[name])}


@pytest.mark.parametrize("kind", LORA_KINDS)
@pytest.mark.parametrize("base", ["sd-1", "sdxl"])
def test_each_kind_adds_weight_times_its_change_and_is_taken_off_exactly(
    request: pytest.FixtureRequest, kind: LoRAKind, base: str
) -> None:
    models: Models = request.getfixturevalue("sd1_models" if base == "sd-1" else "sdxl_models")
    layers = TINY_SD1_LORA_LAYERS if base == "sd-1" else TINY_SDXL_LORA_LAYERS
    tensors = lora_tensors(kind, layers)
    before = snapshot(models)
    with applied(models, [(tensors, 0.7)]):
        for layer in layers:
            target, path = module_of(models, layer)
            parts = parts_of(tensors, layer.diffusers if kind == "peft" else layer.kohya)
            weight = models[target].get_parameter(f"{path}.weight")
            expected = before[target, f"{path}.weight"] + 0.7 * expected_change(kind, parts)
            assert torch.allclose(weight, expected, atol=1e-5)
            if "diff_b" in parts:
                bias = models[target].get_parameter(f"{path}.bias")
                assert torch.allclose(bias, before[target, f"{path}.bias"] + 0.7 * parts["diff_b"], atol=1e-5)
        patched = changed(models, before)
    biases = {(*module_of(models, layer), "bias") for layer in layers if kind == "full" and layer.bias}
    weights = {(*module_of(models, layer), "weight") for layer in layers}
    assert patched == {(target, f"{path}.{name}") for target, path, name in weights | biases}
    assert changed(models, before) == set()


def test_several_loras_add_up_each_at_its_weight(sd1_models: Models) -> None:
    kinds: list[tuple[LoRAKind, float]] = [("lora", 0.5), ("loha", -1.0), ("peft", 0.25), ("lokr", 2.0)]
    loras: list[LoRA] = [
        (lora_tensors(kind, TINY_SD1_LORA_LAYERS, seed=index), w) for index, (kind, w) in enumerate(kinds)
    ]
    before = snapshot(sd1_models)
    with applied(sd1_models, loras):
        for layer in TINY_SD1_LORA_LAYERS:
            target, path = module_of(sd1_models, layer)
            expected = before[target, f"{path}.weight"].clone()
            for (kind, weight), (tensors, _) in zip(kinds, loras, strict=True):
                parts = parts_of(tensors, layer.diffusers if kind == "peft" else layer.kohya)
                expected += weight * expected_change(kind, parts)
            assert torch.allclose(sd1_models[target].get_parameter(f"{path}.weight"), expected, atol=1e-4)
    assert changed(sd1_models, before) == set()


CONV_IN = "lora_unet_conv_in"


def conv_in_lora(parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{CONV_IN}.{part}": tensor for part, tensor in parts.items()}


def test_a_tucker_decomposed_lora_convolution_is_its_three_convolutions_in_a_row(sd1_models: Models) -> None:
    unet = sd1_models["unet"]
    conv = unet.get_submodule("conv_in")
    generator = torch.Generator().manual_seed(3)
    rank = 3
    down, mid, up = (
        torch.randn(shape, generator=generator) for shape in [(rank, 4, 1, 1), (rank, rank, 3, 3), (32, rank, 1, 1)]
    )
    lora = conv_in_lora(
        {"lora_down.weight": down, "lora_mid.weight": mid, "lora_up.weight": up, "alpha": torch.tensor(1.5)}
    )
    sample = torch.randn((1, 4, 8, 8), generator=generator)
    with torch.no_grad():
        before = conv(sample)
        through_lora = torch.nn.functional.conv2d(
            torch.nn.functional.conv2d(torch.nn.functional.conv2d(sample, down), mid, padding=1), up
        )
        with apply_loras(unet, [(lora, 2.0)], "unet"):
            after = conv(sample)
    assert torch.allclose(after - before, 2.0 * (1.5 / rank) * through_lora, atol=1e-4)


def test_tucker_forms_of_loha_and_lokr_convolutions(sd1_models: Models) -> None:
    unet = sd1_models["unet"]
    weight = unet.get_parameter("conv_in.weight")
    original = weight.detach().clone()
    generator = torch.Generator().manual_seed(4)
    rank = 2

    def random(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator)

    loha = {f"hada_t{i}": random(rank, rank, 3, 3) for i in (1, 2)}
    loha |= {f"hada_w{i}_a": random(rank, 32) for i in (1, 2)} | {f"hada_w{i}_b": random(rank, 4) for i in (1, 2)}
    loha["alpha"] = torch.tensor(1.0)
    loha_change = (1.0 / rank) * (
        tucker(loha["hada_t1"], loha["hada_w1_a"], loha["hada_w1_b"])
        * tucker(loha["hada_t2"], loha["hada_w2_a"], loha["hada_w2_b"])
    )
    lokr = {"lokr_w1_a": random(4, rank), "lokr_w1_b": random(rank, 2), "lokr_t2": random(rank, rank, 3, 3)}
    lokr |= {"lokr_w2_a": random(rank, 8), "lokr_w2_b": random(rank, 2), "alpha": torch.tensor(4.0)}
    lokr_change = (4.0 / rank) * kronecker(
        lokr["lokr_w1_a"] @ lokr["lokr_w1_b"], tucker(lokr["lokr_t2"], lokr["lokr_w2_a"], lokr["lokr_w2_b"])
    )
    for parts, change in ((loha, loha_change), (lokr, lokr_change)):
        with apply_loras(unet, [(conv_in_lora(parts), 0.5)], "unet"):
            assert torch.allclose(weight, original + 0.5 * change, atol=1e-4)
        assert torch.equal(weight, original)


def test_kohyas_names_of_the_original_sdxl_unet_reach_the_diffusers_layers() -> None:
    """Real names from kohya SDXL LoRAs, on a UNet built as SDXL's (three levels, two layers each, no attention in
    the first), but narrow."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 2),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
        sample_size=8,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,
    )
    diffusers_by_kohya = [
        ("input_blocks_0_0", "conv_in"),
        ("input_blocks_2_0_emb_layers_1", "down_blocks.0.resnets.1.time_emb_proj"),
        ("input_blocks_3_0_op", "down_blocks.0.downsamplers.0.conv"),
        ("input_blocks_4_0_skip_connection", "down_blocks.1.resnets.0.conv_shortcut"),
        (
            "input_blocks_4_1_transformer_blocks_0_attn2_to_k",
            "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
        ),
        (
            "input_blocks_8_1_transformer_blocks_1_ff_net_0_proj",
            "down_blocks.2.attentions.1.transformer_blocks.1.ff.net.0.proj",
        ),
        ("middle_block_0_in_layers_2", "mid_block.resnets.0.conv1"),
        ("middle_block_1_proj_in", "mid_block.attentions.0.proj_in"),
        ("middle_block_2_out_layers_3", "mid_block.resnets.1.conv2"),
        (
            "output_blocks_0_1_transformer_blocks_0_attn1_to_out_0",
            "up_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0",
        ),
        ("output_blocks_2_2_conv", "up_blocks.0.upsamplers.0.conv"),
        ("output_blocks_5_1_proj_out", "up_blocks.1.attentions.2.proj_out"),
        ("output_blocks_5_2_conv", "up_blocks.1.upsamplers.0.conv"),
        ("output_blocks_8_0_skip_connection", "up_blocks.2.resnets.2.conv_shortcut"),
        ("time_embed_2", "time_embedding.linear_2"),
        ("label_emb_0_0", "add_embedding.linear_1"),
        ("out_2", "conv_out"),
    ]
    for kohya, path in diffusers_by_kohya:
        weight = unet.get_parameter(f"{path}.weight")
        original = weight.detach().clone()
        diff = torch.full_like(weight, 0.25)
        with apply_loras(unet, [({f"lora_unet_{kohya}.diff": diff}, 2.0)], "unet"):
            assert torch.equal(weight, original + 0.5), kohya
        assert torch.equal(weight, original)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({f"{CONV_IN}.dora_scale": torch.ones(32)}, r"tensor 'lora_unet_conv_in.dora_scale' is of no kind nodeloom"),
        ({f"{CONV_IN}.hada_w1_a": torch.ones((32, 2))}, "layer 'lora_unet_conv_in' lacks its hada_w1_b tensor"),
        ({f"{CONV_IN}.alpha": torch.tensor(1.0)}, "layer 'lora_unet_conv_in' lacks its weights tensor"),
        (
            {f"{CONV_IN}.diff": torch.ones((32, 4))},
            r"'lora_unet_conv_in' does not fit the model's, of shape \(32, 4, 3, 3\)",
        ),
    ],
)
def test_a_lora_layer_that_cannot_be_applied_is_refused_and_nothing_stays_patched(
    sd1_models: Models, extra: dict[str, torch.Tensor], message: str
) -> None:
    before = snapshot(sd1_models)
    # The good layers come first, so they are patched before the bad one is met.
    lora = lora_tensors("loha", TINY_SD1_LORA_LAYERS) | extra
    with pytest.raises(ValueError, match=message), applied(sd1_models, [(lora, 1.0)]):
        pass
    assert changed(sd1_models, before) == set()


@pytest.mark.parametrize("base", ["sd-1", "sdxl"])
def test_a_kohya_lora_patches_what_diffusers_conversion_of_it_patches(
    request: pytest.FixtureRequest, base: str
) -> None:
    """diffusers' own reading of a kohya LoRA (`lora_state_dict`, which maps SDXL's original-UNet names by the
    UNet's config and renames the rest to its module paths, in its attention-processor format) patches the very
    weights the kohya names do. Without alphas: diffusers keeps them apart, under names of its own."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline

    models: Models = request.getfixturevalue("sd1_models" if base == "sd-1" else "sdxl_models")
    layers = TINY_SD1_LORA_LAYERS if base == "sd-1" else TINY_SDXL_LORA_LAYERS
    loader = StableDiffusionPipeline if base == "sd-1" else StableDiffusionXLPipeline
    kohya = {name: tensor for name, tensor in lora_tensors("lora", layers).items() if not name.endswith(".alpha")}
    converted, alphas = loader.lora_state_dict(dict(kohya), unet_config=models["unet"].config)
    assert not alphas and set(converted).isdisjoint(kohya)

    def patched(lora: dict[str, torch.Tensor]) -> dict[tuple[LoRATarget, str], torch.Tensor]:
        with applied(models, [(lora, 0.6)]):
            return snapshot(models)

    before = snapshot(models)
    by_kohya, by_diffusers = patched(kohya), patched(converted)
    assert {name for name in before if not torch.equal(before[name], by_kohya[name])} == {
        (*module_of(models, layer)[:1], f"{module_of(models, layer)[1]}.weight") for layer in layers
    }
    assert all(torch.equal(by_kohya[name], by_diffusers[name]) for name in before)
