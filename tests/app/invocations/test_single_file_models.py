"""Single-file models installed and run by the diffusion nodes: the tiny SD-1 pipeline, SDXL base and refiner, and
a VAE, each written in the original single-file layout, make the very latents and pixels of the diffusers folders
they were written from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.diffusion_helpers import NEGATIVE_PROMPT, NOISE_SIZE, PROMPT, SEED, NodeRunner, filter_diffusers_numpy
from tests.original_layout import write_single_file, write_vae_file

from nodeloom.app.invocations.compel import (
    CompelInvocation,
    ConditioningOutput,
    SDXLCompelPromptInvocation,
    SDXLRefinerCompelPromptInvocation,
)
from nodeloom.app.invocations.denoise_latents import DenoiseLatentsInvocation
from nodeloom.app.invocations.fields import ModelIdentifierField
from nodeloom.app.invocations.image import ImageOutput
from nodeloom.app.invocations.latents import LatentsField, LatentsOutput, LatentsToImageInvocation
from nodeloom.app.invocations.model import (
    MainModelLoaderInvocation,
    ModelLoaderOutput,
    VAEField,
    VAELoaderInvocation,
    VAEOutput,
)
from nodeloom.app.invocations.noise import NoiseInvocation, NoiseOutput
from nodeloom.app.invocations.sdxl import (
    SDXLModelLoaderInvocation,
    SDXLModelLoaderOutput,
    SDXLRefinerModelLoaderInvocation,
    SDXLRefinerModelLoaderOutput,
)
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.backend.model_manager.configs import MainCheckpointConfig, VAECheckpointConfig
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelFormat

pytestmark = filter_diffusers_numpy

STEPS = 4


def models_folder(runner: NodeRunner) -> Path:
    folder = runner.services.config.resolve(runner.services.config.models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def install_single_file(runner: NodeRunner, pipeline: Path, **overrides: Any) -> ModelIdentifierField:
    """Writes `pipeline` as one file in the models folder and installs it, configured by the pipeline's folder."""
    path = write_single_file(pipeline, models_folder(runner) / f"{pipeline.name}.safetensors")
    changes = ModelRecordChanges(config_path=str(pipeline), **overrides)
    config = runner.services.model_manager.install.install_path(path, changes)
    assert isinstance(config, MainCheckpointConfig)
    return ModelIdentifierField.from_config(config)


def run(runner: NodeRunner, node: Any, output_class: type[Any]) -> Any:
    output = runner.run(node)
    assert isinstance(output, output_class)
    return output


def denoise(runner: NodeRunner, positive: str, negative: str, **fields: Any) -> torch.Tensor:
    noise = run(runner, NoiseInvocation(seed=SEED, width=NOISE_SIZE, height=NOISE_SIZE), NoiseOutput)
    fields.setdefault("noise", noise.noise)
    output = run(
        runner,
        DenoiseLatentsInvocation(
            positive_conditioning=positive, negative_conditioning=negative, steps=STEPS, cfg_scale=7.5, **fields
        ),
        LatentsOutput,
    )
    latents: torch.Tensor = runner.services.tensors.load(output.latents.latents_name)
    return latents


def decode(runner: NodeRunner, latents: torch.Tensor, vae: VAEField) -> torch.Tensor:
    name = runner.services.tensors.save(latents)
    output = run(runner, LatentsToImageInvocation(latents=LatentsField(latents_name=name), vae=vae), ImageOutput)
    image = runner.services.images.get_pil_image(output.image.image_name).convert("RGB")
    return torch.from_numpy(np.array(image))


@pytest.fixture(scope="module")
def sd1(tmp_path_factory: pytest.TempPathFactory, tiny_sd_model: Path) -> Iterator[NodeRunner]:
    runner = NodeRunner.start(tmp_path_factory.mktemp("root"), tiny_sd_model)
    yield runner
    runner.close()


def sd1_text_to_image(runner: NodeRunner, model: ModelIdentifierField) -> tuple[torch.Tensor, torch.Tensor]:
    parts = run(runner, MainModelLoaderInvocation(model=model), ModelLoaderOutput)
    prompts = [
        run(runner, CompelInvocation(prompt=p, clip=parts.clip), ConditioningOutput) for p in (PROMPT, NEGATIVE_PROMPT)
    ]
    latents = denoise(runner, prompts[0].conditioning, prompts[1].conditioning, unet=parts.unet, scheduler="ddim")
    return latents, decode(runner, latents, parts.vae)


def test_an_sd1_single_file_makes_the_diffusers_folders_image(sd1: NodeRunner, tiny_sd_model: Path) -> None:
    single = install_single_file(sd1, tiny_sd_model, base=BaseModelType.StableDiffusion1)
    assert single.base == BaseModelType.StableDiffusion1
    latents, image = sd1_text_to_image(sd1, single)
    expected_latents, expected_image = sd1_text_to_image(sd1, sd1.model)
    assert torch.equal(latents, expected_latents)
    assert torch.equal(image, expected_image)
    assert image.float().std() > 0


def test_a_single_file_vae_decodes_as_the_diffusers_vae(sd1: NodeRunner, tiny_sd_model: Path) -> None:
    path = write_vae_file(tiny_sd_model / "vae", models_folder(sd1) / "tiny-vae.safetensors")
    config = sd1.services.model_manager.install.install_path(
        path, ModelRecordChanges(base=BaseModelType.StableDiffusion1, config_path=str(tiny_sd_model / "vae"))
    )
    assert isinstance(config, VAECheckpointConfig)
    vae = run(sd1, VAELoaderInvocation(vae_model=ModelIdentifierField.from_config(config)), VAEOutput).vae
    parts = run(sd1, MainModelLoaderInvocation(model=sd1.model), ModelLoaderOutput)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(SEED))
    assert torch.equal(decode(sd1, latents, vae), decode(sd1, latents, parts.vae))


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory: pytest.TempPathFactory, tiny_sdxl_models: tuple[Path, Path]) -> Iterator[NodeRunner]:
    runner = NodeRunner.start(tmp_path_factory.mktemp("root"), tiny_sdxl_models[0], base=None)
    yield runner
    runner.close()


def sdxl_base(runner: NodeRunner, model: ModelIdentifierField, **fields: Any) -> tuple[torch.Tensor, VAEField]:
    parts = run(runner, SDXLModelLoaderInvocation(model=model), SDXLModelLoaderOutput)
    prompts = [
        run(runner, SDXLCompelPromptInvocation(prompt=p, clip=parts.clip, clip2=parts.clip2), ConditioningOutput)
        for p in (PROMPT, NEGATIVE_PROMPT)
    ]
    latents = denoise(runner, prompts[0].conditioning, prompts[1].conditioning, unet=parts.unet, **fields)
    return latents, parts.vae


def sdxl_refine(runner: NodeRunner, refiner: ModelIdentifierField, latents: torch.Tensor) -> torch.Tensor:
    parts = run(runner, SDXLRefinerModelLoaderInvocation(model=refiner), SDXLRefinerModelLoaderOutput)
    prompts = [
        run(runner, SDXLRefinerCompelPromptInvocation(style=p, clip2=parts.clip2), ConditioningOutput)
        for p in (PROMPT, NEGATIVE_PROMPT)
    ]
    refined = denoise(
        runner,
        prompts[0].conditioning,
        prompts[1].conditioning,
        noise=None,
        latents=LatentsField(latents_name=runner.services.tensors.save(latents)),
        unet=parts.unet,
        scheduler="ddim",
        denoising_start=0.6,
    )
    return decode(runner, refined, parts.vae)


def test_sdxl_base_and_refiner_single_files_make_the_diffusers_folders_images(
    sdxl: NodeRunner, tiny_sdxl_models: tuple[Path, Path]
) -> None:
    base_folder, refiner_folder = tiny_sdxl_models
    # SDXL's base and refiner are told by their text encoders, whatever their size.
    base = install_single_file(sdxl, base_folder)
    refiner = install_single_file(sdxl, refiner_folder)
    assert (base.base, refiner.base) == (BaseModelType.StableDiffusionXL, BaseModelType.StableDiffusionXLRefiner)
    assert sdxl.services.model_manager.store.get_model(base.key).format == ModelFormat.Checkpoint
    folder_refiner = ModelIdentifierField.from_config(
        sdxl.services.model_manager.install.install_path(refiner_folder, ModelRecordChanges())
    )

    single_file = sdxl_images(sdxl, base, refiner)
    folders = sdxl_images(sdxl, sdxl.model, folder_refiner)
    assert all(torch.equal(ours, theirs) for ours, theirs in zip(single_file, folders, strict=True))


def sdxl_images(
    runner: NodeRunner, base: ModelIdentifierField, refiner: ModelIdentifierField
) -> tuple[torch.Tensor, ...]:
    """The base's latents and image, and the image the refiner makes of the base's latents at 60%."""
    latents, vae = sdxl_base(runner, base, scheduler="euler_a")
    handed_over, _ = sdxl_base(runner, base, scheduler="ddim", denoising_end=0.6)
    return latents, decode(runner, latents, vae), sdxl_refine(runner, refiner, handed_over)
