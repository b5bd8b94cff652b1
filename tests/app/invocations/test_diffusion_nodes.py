"""The diffusion nodes on the tiny model, against diffusers' own pipelines.

The node decomposition (main_model_loader → compel → noise → denoise_latents → l2i) gives the very pixels of
`StableDiffusionPipeline` on the same model, prompts, seed, scheduler and steps: exact equality, no tolerance.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from tests.diffusion_helpers import (
    NEGATIVE_PROMPT,
    NOISE_SIZE,
    PROMPT,
    SEED,
    NodeRunner,
    filter_diffusers_numpy,
    image_size,
    load_pipeline,
)
from tests.tiny_model import write_tiny_lora

from nodeloom.app.invocations.baseinvocation import CanceledException
from nodeloom.app.invocations.compel import CLIPSkipInvocation, CompelInvocation, ConditioningOutput
from nodeloom.app.invocations.denoise_latents import DenoiseLatentsInvocation, RegionalPromptsNotSupportedError
from nodeloom.app.invocations.fields import ImageField
from nodeloom.app.invocations.image import ImageOutput
from nodeloom.app.invocations.latents import (
    CreateDenoiseMaskInvocation,
    DenoiseMaskOutput,
    ImageToLatentsInvocation,
    LatentsOutput,
    LatentsToImageInvocation,
)
from nodeloom.app.invocations.model import (
    LoRACollectionLoader,
    LoRALoaderInvocation,
    LoRASelectorInvocation,
    MainModelLoaderInvocation,
    ModelLoaderOutput,
    SeamlessModeInvocation,
    SeamlessModeOutput,
    UNetField,
    VAEField,
    VAELoaderInvocation,
    WrongModelTypeError,
)
from nodeloom.app.invocations.noise import NoiseInvocation, NoiseOutput
from nodeloom.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.app.services.shared.default_graphs import DENOISE_ID, NOISE_ID, text_to_image_graph
from nodeloom.backend.model_manager.taxonomy import BaseModelType
from nodeloom.backend.stable_diffusion.schedulers import SCHEDULER_NAME_VALUES

pytestmark = filter_diffusers_numpy


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, tiny_sd_model: Path) -> Iterator[NodeRunner]:
    runner = NodeRunner.start(tmp_path_factory.mktemp("root"), tiny_sd_model)
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def loaded(runner: NodeRunner) -> ModelLoaderOutput:
    output = runner.run(MainModelLoaderInvocation(model=runner.model))
    assert isinstance(output, ModelLoaderOutput)
    return output


def conditioning(runner: NodeRunner, loaded: ModelLoaderOutput, prompt: str) -> ConditioningOutput:
    output = runner.run(CompelInvocation(prompt=prompt, clip=loaded.clip))
    assert isinstance(output, ConditioningOutput)
    return output


def noise(runner: NodeRunner, seed: int = SEED, size: int = NOISE_SIZE) -> NoiseOutput:
    output = runner.run(NoiseInvocation(seed=seed, width=size, height=size))
    assert isinstance(output, NoiseOutput)
    return output


def denoise(runner: NodeRunner, loaded: ModelLoaderOutput, **fields: Any) -> LatentsOutput:
    fields.setdefault("positive_conditioning", conditioning(runner, loaded, PROMPT).conditioning)
    fields.setdefault("negative_conditioning", conditioning(runner, loaded, NEGATIVE_PROMPT).conditioning)
    fields.setdefault("unet", loaded.unet)
    fields.setdefault("steps", 4)
    output = runner.run(DenoiseLatentsInvocation(**fields))
    assert isinstance(output, LatentsOutput)
    return output


def decode(runner: NodeRunner, latents: LatentsOutput, vae: VAEField) -> Image.Image:
    output = runner.run(LatentsToImageInvocation(latents=latents.latents, vae=vae))
    assert isinstance(output, ImageOutput)
    return runner.services.images.get_pil_image(output.image.image_name)


def pixels(image: Image.Image) -> np.ndarray[Any, Any]:
    return np.asarray(image.convert("RGB"))


def add_image(runner: NodeRunner, image: Image.Image) -> ImageField:
    dto = runner.services.images.create(image, ResourceOrigin.EXTERNAL, ImageCategory.USER)
    return ImageField(image_name=dto.image_name)


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a", "dpmpp_2m"])
def test_the_node_pipeline_reproduces_the_diffusers_pipeline(
    runner: NodeRunner, loaded: ModelLoaderOutput, tiny_sd_model: Path, scheduler: SCHEDULER_NAME_VALUES
) -> None:
    from nodeloom.backend.stable_diffusion.schedulers import make_scheduler

    latents = denoise(runner, loaded, noise=noise(runner).noise, scheduler=scheduler, steps=5, cfg_scale=7.5)
    image = decode(runner, latents, loaded.vae)

    pipeline = load_pipeline(tiny_sd_model)
    pipeline.scheduler = make_scheduler(scheduler, pipeline.scheduler.config)
    size = image_size(pipeline, NOISE_SIZE)
    expected = pipeline(
        PROMPT,
        negative_prompt=NEGATIVE_PROMPT,
        num_inference_steps=5,
        guidance_scale=7.5,
        width=size,
        height=size,
        generator=torch.Generator("cpu").manual_seed(SEED),
    ).images[0]
    assert image.size == (size, size)
    assert np.array_equal(pixels(image), pixels(expected))


def test_noise_is_the_pipelines_initial_latents(runner: NodeRunner) -> None:
    output = noise(runner, seed=7, size=32)
    stored = runner.services.tensors.load(output.noise.latents_name)
    expected = torch.randn((1, 4, 4, 4), generator=torch.Generator("cpu").manual_seed(7))
    assert torch.equal(stored, expected)
    assert (output.width, output.height, output.noise.seed) == (32, 32, 7)


def test_noise_wraps_large_seeds_and_refuses_partial_latents() -> None:
    assert NoiseInvocation(seed=2**32 + 5).seed == 5
    with pytest.raises(ValueError, match="multiple of 8"):
        NoiseInvocation(width=60)


def test_denoising_reports_every_step_with_a_preview(runner: NodeRunner, loaded: ModelLoaderOutput) -> None:
    runner.progress.clear()
    denoise(runner, loaded, noise=noise(runner).noise, steps=3)
    steps = [p for p in runner.progress if p.message.startswith("Denoising step")]
    assert [p.message for p in steps] == [f"Denoising step {step} of 3" for step in (1, 2, 3)]
    assert [p.percentage for p in steps] == pytest.approx([step / 3 for step in (1, 2, 3)])
    for step in steps:
        assert step.image is not None
        assert step.image.dataURL.startswith("data:image/jpeg;base64,")
        assert (step.image.width, step.image.height) == (NOISE_SIZE // 8, NOISE_SIZE // 8)


def test_a_cancel_stops_denoising_at_the_next_step(runner: NodeRunner, loaded: ModelLoaderOutput) -> None:
    node = DenoiseLatentsInvocation(
        positive_conditioning=conditioning(runner, loaded, PROMPT).conditioning,
        negative_conditioning=conditioning(runner, loaded, NEGATIVE_PROMPT).conditioning,
        noise=noise(runner).noise,
        unet=loaded.unet,
        steps=6,
    )
    runner.progress.clear()
    canceled_after_step_2 = lambda: any(p.message == "Denoising step 2 of 6" for p in runner.progress)  # noqa: E731
    with pytest.raises(CanceledException):
        runner.run(node, is_canceled=canceled_after_step_2)
    # Step 3 ran (its latents exist) but its report raised: nothing after it did.
    assert [p.message for p in runner.progress if p.message.startswith("Denoising step")] == [
        "Denoising step 1 of 6",
        "Denoising step 2 of 6",
    ]


def test_image_to_image_reproduces_the_img2img_pipeline(
    runner: NodeRunner, loaded: ModelLoaderOutput, tiny_sd_model: Path
) -> None:
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import StableDiffusionImg2ImgPipeline

    pipeline = StableDiffusionImg2ImgPipeline(**load_pipeline(tiny_sd_model).components)
    pipeline.set_progress_bar_config(disable=True)
    size = image_size(pipeline, NOISE_SIZE)
    source = Image.radial_gradient("L").resize((size, size)).convert("RGB")
    encoded = runner.run(ImageToLatentsInvocation(image=add_image(runner, source), vae=loaded.vae))
    assert isinstance(encoded, LatentsOutput)

    latents = denoise(
        runner, loaded, noise=noise(runner).noise, latents=encoded.latents, denoising_start=0.4, scheduler="ddim"
    )
    image = decode(runner, latents, loaded.vae)

    expected = pipeline(
        PROMPT,
        image=runner.services.tensors.load(encoded.latents.latents_name),
        strength=0.6,
        negative_prompt=NEGATIVE_PROMPT,
        num_inference_steps=4,
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(SEED),
    ).images[0]
    assert np.array_equal(pixels(image), pixels(expected))


def test_image_to_latents_and_back_keeps_the_size(runner: NodeRunner, loaded: ModelLoaderOutput) -> None:
    source = Image.linear_gradient("L").resize((20, 12)).convert("RGB")
    encoded = runner.run(ImageToLatentsInvocation(image=add_image(runner, source), vae=loaded.vae))
    assert isinstance(encoded, LatentsOutput)
    # Cut to multiples of 8 pixels, then 2x2 pixels to a latent in the tiny VAE.
    assert runner.services.tensors.load(encoded.latents.latents_name).shape == (1, 4, 4, 8)
    assert decode(runner, encoded, loaded.vae).size == (16, 8)


def test_a_denoise_mask_keeps_the_latents_where_it_is_white(runner: NodeRunner, loaded: ModelLoaderOutput) -> None:
    size = NOISE_SIZE // 4
    source = add_image(runner, Image.radial_gradient("L").resize((size, size)).convert("RGB"))
    encoded = runner.run(ImageToLatentsInvocation(image=source, vae=loaded.vae))
    mask_image = Image.new("L", (size, size), 0)
    mask_image.paste(255, (0, 0, size // 2, size))
    mask = runner.run(CreateDenoiseMaskInvocation(vae=loaded.vae, image=source, mask=add_image(runner, mask_image)))
    assert isinstance(mask, DenoiseMaskOutput)
    assert mask.denoise_mask.masked_latents_name is not None

    latents = denoise(
        runner, loaded, noise=noise(runner).noise, latents=encoded.latents, denoise_mask=mask.denoise_mask
    )
    before = runner.services.tensors.load(encoded.latents.latents_name)
    after = runner.services.tensors.load(latents.latents.latents_name)
    kept = slice(0, before.shape[3] // 2)
    assert torch.equal(after[..., kept], before[..., kept])
    assert not torch.equal(after, before)


def test_seamless_changes_the_image_and_leaves_the_models_unpatched(
    runner: NodeRunner, loaded: ModelLoaderOutput
) -> None:
    plain_noise = noise(runner).noise
    plain = decode(runner, denoise(runner, loaded, noise=plain_noise), loaded.vae)
    patched = runner.run(SeamlessModeInvocation(unet=loaded.unet, vae=loaded.vae, seamless_y=False))
    assert isinstance(patched, SeamlessModeOutput)
    assert patched.unet is not None and patched.vae is not None
    assert patched.unet.seamless_axes == patched.vae.seamless_axes == ["x"]

    seamless = decode(runner, denoise(runner, loaded, noise=plain_noise, unet=patched.unet), patched.vae)
    assert not np.array_equal(pixels(seamless), pixels(plain))
    again = decode(runner, denoise(runner, loaded, noise=plain_noise), loaded.vae)
    assert np.array_equal(pixels(again), pixels(plain))


def test_a_lora_changes_the_image_only_while_it_is_applied(runner: NodeRunner, loaded: ModelLoaderOutput) -> None:
    # Under the models folder: installs read nowhere else unless model_install_roots says so.
    settings = runner.services.config
    lora_path = settings.resolve(settings.models_dir) / "tiny-lora.safetensors"
    lora_path.parent.mkdir(parents=True, exist_ok=True)
    write_tiny_lora(lora_path)
    config = runner.services.model_manager.install.install_path(
        lora_path, ModelRecordChanges(base=BaseModelType.StableDiffusion1)
    )
    from nodeloom.app.invocations.fields import ModelIdentifierField

    lora = ModelIdentifierField.from_config(config)
    with_lora = runner.run(LoRALoaderInvocation(lora=lora, weight=0.8, unet=loaded.unet, clip=loaded.clip))
    assert with_lora.unet.loras[0].lora.key == lora.key
    assert with_lora.clip.loras[0].weight == 0.8
    with pytest.raises(ValueError, match="already applied to unet"):
        runner.run(LoRALoaderInvocation(lora=lora, unet=with_lora.unet))
    selected = runner.run(LoRASelectorInvocation(lora=lora, weight=0.8)).lora
    twice = [selected, selected.model_copy(update={"weight": 0.1})]
    collected = runner.run(LoRACollectionLoader(loras=twice, unet=loaded.unet, clip=loaded.clip))
    # As in InvokeAI, a LoRA twice in the collection is applied once, at its first weight.
    assert (collected.unet, collected.clip) == (with_lora.unet, with_lora.clip)

    shared_noise = noise(runner).noise
    plain = decode(runner, denoise(runner, loaded, noise=shared_noise), loaded.vae)
    lora_image = decode(
        runner,
        denoise(
            runner,
            loaded,
            noise=shared_noise,
            unet=with_lora.unet,
            positive_conditioning=runner.run(CompelInvocation(prompt=PROMPT, clip=with_lora.clip)).conditioning,
        ),
        loaded.vae,
    )
    assert not np.array_equal(pixels(lora_image), pixels(plain))
    again = decode(runner, denoise(runner, loaded, noise=shared_noise), loaded.vae)
    assert np.array_equal(pixels(again), pixels(plain))


def test_clip_skip_adds_to_the_layers_the_clip_field_skips(runner: NodeRunner, loaded: ModelLoaderOutput) -> None:
    once = runner.run(CLIPSkipInvocation(clip=loaded.clip, skipped_layers=1)).clip
    again = runner.run(CLIPSkipInvocation(clip=once, skipped_layers=2)).clip
    assert (loaded.clip.skipped_layers, once.skipped_layers, again.skipped_layers) == (0, 1, 3)


def test_loaders_refuse_models_of_another_type(runner: NodeRunner, loaded: ModelLoaderOutput) -> None:
    with pytest.raises(WrongModelTypeError, match="is a main model, where a vae model is needed"):
        runner.run(VAELoaderInvocation(vae_model=runner.model))
    assert isinstance(loaded.unet, UNetField)


def test_regional_prompts_are_refused_clearly(runner: NodeRunner, loaded: ModelLoaderOutput) -> None:
    from nodeloom.app.invocations.compel import TensorField

    masked = conditioning(runner, loaded, PROMPT).conditioning.model_copy(
        update={"mask": TensorField(tensor_name=noise(runner).noise.latents_name)}
    )
    with pytest.raises(RegionalPromptsNotSupportedError):
        denoise(runner, loaded, noise=noise(runner).noise, positive_conditioning=masked)


def test_the_text_to_image_graph_validates() -> None:
    model = {"key": "k", "hash": "blake2b:00", "name": "tiny", "base": "sd-1", "type": "main"}
    graph = text_to_image_graph(model, PROMPT, NEGATIVE_PROMPT, 64, 64, 5, 7.5, "euler_a", 42)
    graph.validate_self()
    noise_node = graph.get_node(NOISE_ID)
    assert isinstance(noise_node, NoiseInvocation)
    assert (noise_node.seed, noise_node.width, noise_node.height) == (42, 64, 64)
    assert graph.get_node(DENOISE_ID).model_dump()["scheduler"] == "euler_a"
    assert type(graph).model_validate(json.loads(graph.model_dump_json())).nodes.keys() == graph.nodes.keys()


def test_the_diffusion_node_modules_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import nodeloom.app.invocations.model, nodeloom.app.invocations.compel, nodeloom.app.invocations.noise\n"
        "import nodeloom.app.invocations.latents, nodeloom.app.invocations.denoise_latents\n"
        "import nodeloom.app.services.shared.default_graphs\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'compel') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
