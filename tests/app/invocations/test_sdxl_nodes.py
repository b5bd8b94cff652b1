"""The SDXL nodes on a tiny SDXL base and refiner, against diffusers' own SDXL pipelines.

sdxl_model_loader → sdxl_compel_prompt → noise → denoise_latents → l2i gives the very pixels of
`StableDiffusionXLPipeline` on the same model, prompts, seed, scheduler and steps, and the base handing its latents
to the refiner those of diffusers' base+refiner recipe (`denoising_end` / `denoising_start`): exact equality.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.diffusion_helpers import (
    NEGATIVE_PROMPT,
    NOISE_SIZE,
    PROMPT,
    SEED,
    NodeRunner,
    filter_diffusers_numpy,
    sdxl_reference_image,
)
from tests.tiny_model import write_tiny_sdxl_lora

from nodeloom.app.invocations.compel import (
    ConditioningOutput,
    SDXLCompelPromptInvocation,
    SDXLRefinerCompelPromptInvocation,
)
from nodeloom.app.invocations.denoise_latents import DenoiseLatentsInvocation
from nodeloom.app.invocations.fields import ModelIdentifierField
from nodeloom.app.invocations.image import ImageOutput
from nodeloom.app.invocations.latents import LatentsOutput, LatentsToImageInvocation
from nodeloom.app.invocations.model import UNetField, VAEField, WrongModelTypeError
from nodeloom.app.invocations.noise import NoiseInvocation, NoiseOutput
from nodeloom.app.invocations.sdxl import (
    SDXLLoRALoaderInvocation,
    SDXLLoRALoaderOutput,
    SDXLModelLoaderInvocation,
    SDXLModelLoaderOutput,
    SDXLRefinerModelLoaderInvocation,
    SDXLRefinerModelLoaderOutput,
)
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.backend.model_manager.configs import MainDiffusersConfig
from nodeloom.backend.model_manager.taxonomy import BaseModelType, SubModelType
from nodeloom.backend.stable_diffusion.schedulers import SCHEDULER_NAME_VALUES

pytestmark = filter_diffusers_numpy

STEPS = 5
SIZE = 1024
"""The original and target size the prompts condition on (the tiny VAE makes 16x16 images of any noise here)."""


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, tiny_sdxl_models: tuple[Path, Path]) -> Iterator[NodeRunner]:
    runner = NodeRunner.start(tmp_path_factory.mktemp("root"), tiny_sdxl_models[0], base=None)
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def refiner(runner: NodeRunner, tiny_sdxl_models: tuple[Path, Path]) -> ModelIdentifierField:
    config = runner.services.model_manager.install.install_path(tiny_sdxl_models[1], ModelRecordChanges())
    return ModelIdentifierField.from_config(config)


@pytest.fixture(scope="module")
def loaded(runner: NodeRunner) -> SDXLModelLoaderOutput:
    output = runner.run(SDXLModelLoaderInvocation(model=runner.model))
    assert isinstance(output, SDXLModelLoaderOutput)
    return output


def sdxl_prompt(runner: NodeRunner, loaded: SDXLModelLoaderOutput, prompt: str, **fields: Any) -> ConditioningOutput:
    output = runner.run(SDXLCompelPromptInvocation(prompt=prompt, clip=loaded.clip, clip2=loaded.clip2, **fields))
    assert isinstance(output, ConditioningOutput)
    return output


def noise(runner: NodeRunner) -> NoiseOutput:
    output = runner.run(NoiseInvocation(seed=SEED, width=NOISE_SIZE, height=NOISE_SIZE))
    assert isinstance(output, NoiseOutput)
    return output


def base_latents(runner: NodeRunner, loaded: SDXLModelLoaderOutput, negative: str, **fields: Any) -> LatentsOutput:
    output = runner.run(
        DenoiseLatentsInvocation(
            positive_conditioning=sdxl_prompt(runner, loaded, PROMPT).conditioning,
            negative_conditioning=sdxl_prompt(runner, loaded, negative).conditioning,
            noise=noise(runner).noise,
            unet=loaded.unet,
            steps=STEPS,
            cfg_scale=7.5,
            **fields,
        )
    )
    assert isinstance(output, LatentsOutput)
    return output


def decode(runner: NodeRunner, latents: LatentsOutput, vae: VAEField) -> np.ndarray[Any, Any]:
    output = runner.run(LatentsToImageInvocation(latents=latents.latents, vae=vae))
    assert isinstance(output, ImageOutput)
    return np.asarray(runner.services.images.get_pil_image(output.image.image_name).convert("RGB"))


def test_the_sdxl_folders_are_installed_as_base_and_refiner(runner: NodeRunner, refiner: ModelIdentifierField) -> None:
    assert runner.model.base == BaseModelType.StableDiffusionXL
    assert refiner.base == BaseModelType.StableDiffusionXLRefiner
    config = runner.services.model_manager.store.get_model(refiner.key)
    assert isinstance(config, MainDiffusersConfig)
    assert SubModelType.TextEncoder not in config.submodels
    with runner.services.model_manager.load.load_model(config, SubModelType.TextEncoder2) as text_encoder:
        assert type(text_encoder).__name__ == "CLIPTextModelWithProjection"


@pytest.mark.parametrize(("scheduler", "negative"), [("ddim", NEGATIVE_PROMPT), ("euler_a", "")])
def test_the_sdxl_nodes_reproduce_the_sdxl_pipeline(
    runner: NodeRunner,
    loaded: SDXLModelLoaderOutput,
    tiny_sdxl_models: tuple[Path, Path],
    scheduler: SCHEDULER_NAME_VALUES,
    negative: str,
) -> None:
    image = decode(runner, base_latents(runner, loaded, negative, scheduler=scheduler), loaded.vae)
    # An empty negative prompt is zeros in both: the pipeline's when none is given.
    expected = sdxl_reference_image(tiny_sdxl_models, scheduler, negative or None, STEPS, SIZE)
    assert image.shape == expected.shape == (16, 16, 3)
    assert np.array_equal(image, expected)


def test_size_and_crop_conditioning_reach_the_unet(runner: NodeRunner, loaded: SDXLModelLoaderOutput) -> None:
    plain = sdxl_prompt(runner, loaded, PROMPT)
    cropped = sdxl_prompt(runner, loaded, PROMPT, original_width=640, original_height=480, crop_top=8, crop_left=4)
    stored = runner.services.conditioning.load(cropped.conditioning.conditioning_name)
    assert stored["add_time_ids"].tolist() == [[480, 640, 8, 4, SIZE, SIZE]]
    assert stored["embeds"].shape == (1, 77, 64)
    assert stored["pooled_embeds"].shape == (1, 32)
    fields = {"negative_conditioning": plain.conditioning, "noise": noise(runner).noise, "unet": loaded.unet}
    images = [
        runner.run(DenoiseLatentsInvocation(positive_conditioning=c.conditioning, steps=2, **fields))
        for c in (plain, cropped)
    ]
    latents = [runner.services.tensors.load(output.latents.latents_name) for output in images]
    assert not torch.equal(latents[0], latents[1])


def test_base_and_refiner_reproduce_the_diffusers_recipe(
    runner: NodeRunner,
    loaded: SDXLModelLoaderOutput,
    refiner: ModelIdentifierField,
    tiny_sdxl_models: tuple[Path, Path],
) -> None:
    handover = 0.6
    base = base_latents(runner, loaded, NEGATIVE_PROMPT, scheduler="ddim", denoising_end=handover)
    parts = runner.run(SDXLRefinerModelLoaderInvocation(model=refiner))
    assert isinstance(parts, SDXLRefinerModelLoaderOutput)
    refined = runner.run(
        DenoiseLatentsInvocation(
            positive_conditioning=runner.run(
                SDXLRefinerCompelPromptInvocation(style=PROMPT, clip2=parts.clip2)
            ).conditioning,
            negative_conditioning=runner.run(
                SDXLRefinerCompelPromptInvocation(style=NEGATIVE_PROMPT, aesthetic_score=2.5, clip2=parts.clip2)
            ).conditioning,
            latents=base.latents,
            unet=parts.unet,
            steps=STEPS,
            cfg_scale=7.5,
            scheduler="ddim",
            denoising_start=handover,
        )
    )
    assert isinstance(refined, LatentsOutput)
    image = decode(runner, refined, parts.vae)

    expected = sdxl_reference_image(tiny_sdxl_models, "ddim", NEGATIVE_PROMPT, STEPS, SIZE, refiner_start=handover)
    assert np.array_equal(image, expected)


def test_the_sdxl_lora_loader_adds_the_lora_to_the_unet_and_both_text_encoders(
    runner: NodeRunner, loaded: SDXLModelLoaderOutput
) -> None:
    settings = runner.services.config
    lora_path = settings.resolve(settings.models_dir) / "tiny-sdxl-lora.safetensors"
    lora_path.parent.mkdir(parents=True, exist_ok=True)
    config = runner.services.model_manager.install.install_path(write_tiny_sdxl_lora(lora_path))
    assert config.base == BaseModelType.StableDiffusionXL
    lora = ModelIdentifierField.from_config(config)
    output = runner.run(
        SDXLLoRALoaderInvocation(lora=lora, weight=0.5, unet=loaded.unet, clip=loaded.clip, clip2=loaded.clip2)
    )
    assert isinstance(output, SDXLLoRALoaderOutput)
    assert output.unet is not None and output.clip is not None and output.clip2 is not None
    for field in (output.unet, output.clip, output.clip2):
        assert [(applied.lora.key, applied.weight) for applied in field.loras] == [(lora.key, 0.5)]

    plain = sdxl_prompt(runner, loaded, PROMPT)
    patched = runner.run(SDXLCompelPromptInvocation(prompt=PROMPT, clip=output.clip, clip2=output.clip2))
    stored = [runner.services.conditioning.load(c.conditioning.conditioning_name) for c in (plain, patched)]
    # The first encoder's half of the width and the second's both change, and so do the pooled embeddings.
    for half in (slice(0, 32), slice(32, 64)):
        assert not torch.equal(stored[0]["embeds"][..., half], stored[1]["embeds"][..., half])
    assert not torch.equal(stored[0]["pooled_embeds"], stored[1]["pooled_embeds"])
    # Taken off after: the cached encoders encode as before.
    again = runner.services.conditioning.load(sdxl_prompt(runner, loaded, PROMPT).conditioning.conditioning_name)
    assert torch.equal(again["embeds"], stored[0]["embeds"])

    def denoised(unet: UNetField) -> torch.Tensor:
        node = DenoiseLatentsInvocation(
            positive_conditioning=plain.conditioning,
            negative_conditioning=plain.conditioning,
            noise=noise(runner).noise,
            unet=unet,
            steps=2,
        )
        output = runner.run(node)
        assert isinstance(output, LatentsOutput)
        latents: torch.Tensor = runner.services.tensors.load(output.latents.latents_name)
        return latents

    assert not torch.equal(denoised(output.unet), denoised(loaded.unet))


def test_sdxl_loaders_refuse_the_wrong_base(
    runner: NodeRunner, loaded: SDXLModelLoaderOutput, refiner: ModelIdentifierField
) -> None:
    with pytest.raises(WrongModelTypeError, match="is a sdxl-refiner model, where an sdxl one is needed"):
        runner.run(SDXLModelLoaderInvocation(model=refiner))
    with pytest.raises(WrongModelTypeError, match="is a sdxl model, where an sdxl-refiner one is needed"):
        runner.run(SDXLRefinerModelLoaderInvocation(model=runner.model))


def test_an_sdxl_unet_needs_sdxl_conditioning(runner: NodeRunner, loaded: SDXLModelLoaderOutput) -> None:
    from nodeloom.backend.stable_diffusion.prompts import TextConditioning

    sd_style = runner.services.conditioning.save(TextConditioning(embeds=torch.zeros(1, 77, 64)).to_stored())
    conditioning = sdxl_prompt(runner, loaded, PROMPT).conditioning
    node = DenoiseLatentsInvocation(
        positive_conditioning=conditioning,
        negative_conditioning=conditioning.model_copy(update={"conditioning_name": sd_style}),
        noise=noise(runner).noise,
        unet=loaded.unet,
        steps=2,
    )
    with pytest.raises(ValueError, match="needs SDXL conditioning"):
        runner.run(node)


def test_a_float16_vae_with_force_upcast_decodes_in_float32(tiny_sdxl_models: tuple[Path, Path]) -> None:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    from nodeloom.backend.stable_diffusion.vae import vae_options

    vae = AutoencoderKL.from_pretrained(tiny_sdxl_models[0] / "vae", local_files_only=True, torch_dtype=torch.float16)
    assert vae.config["force_upcast"]
    with vae_options(vae, fp32=False, tiled=False, tile_size=0):
        assert vae.dtype == torch.float32
    assert vae.dtype == torch.float16
    vae.register_to_config(force_upcast=False)
    with vae_options(vae, fp32=False, tiled=False, tile_size=0):
        assert vae.dtype == torch.float16
