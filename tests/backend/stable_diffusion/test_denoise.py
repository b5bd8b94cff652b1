"""The denoising loop against diffusers' pipelines on the tiny model: the same latents, bit for bit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, get_args

import pytest
import torch
from tests.diffusion_helpers import NEGATIVE_PROMPT, PROMPT, SEED, filter_diffusers_numpy

from nodeloom.backend.stable_diffusion.denoise import DenoiseInputs, DenoiseMask, StepCallback, denoise, step_range
from nodeloom.backend.stable_diffusion.noise import generator_after_noise, make_noise
from nodeloom.backend.stable_diffusion.prompts import encode_prompt
from nodeloom.backend.stable_diffusion.schedulers import SCHEDULER_NAME_VALUES, SCHEDULERS, make_scheduler

if TYPE_CHECKING:
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline

pytestmark = filter_diffusers_numpy

LATENT_SIZE = 8


def embeddings(pipeline: StableDiffusionPipeline, prompt: str) -> torch.Tensor:
    return encode_prompt(pipeline.tokenizer, pipeline.text_encoder, prompt).embeds


def inputs(pipeline: StableDiffusionPipeline, **fields: Any) -> DenoiseInputs:
    fields.setdefault("noise", make_noise(SEED, LATENT_SIZE * 8, LATENT_SIZE * 8))
    fields.setdefault("steps", 4)
    fields.setdefault("cfg_scale", 7.5)
    return DenoiseInputs(
        positive=fields.pop("positive", embeddings(pipeline, PROMPT)),
        negative=embeddings(pipeline, NEGATIVE_PROMPT),
        seed=SEED,
        **fields,
    )


def run(
    pipeline: StableDiffusionPipeline,
    scheduler: SCHEDULER_NAME_VALUES,
    unet: UNet2DConditionModel | None = None,
    on_step: StepCallback | None = None,
    **fields: Any,
) -> torch.Tensor:
    """The loop's latents with a fresh scheduler of that name, on the pipeline's UNet unless another is given."""
    fresh = make_scheduler(scheduler, pipeline.scheduler.config)
    return denoise(unet or pipeline.unet, fresh, inputs(pipeline, **fields), on_step)


def pipeline_latents(
    pipeline: StableDiffusionPipeline, scheduler: SCHEDULER_NAME_VALUES, **arguments: Any
) -> torch.Tensor:
    size = LATENT_SIZE * pipeline.vae_scale_factor
    original = pipeline.scheduler
    pipeline.scheduler = make_scheduler(scheduler, original.config)
    try:
        latents: torch.Tensor = pipeline(
            PROMPT,
            negative_prompt=NEGATIVE_PROMPT,
            width=size,
            height=size,
            generator=torch.Generator("cpu").manual_seed(SEED),
            output_type="latent",
            **arguments,
        ).images
    finally:
        pipeline.scheduler = original
    return latents


MATCHED_SCHEDULERS: list[SCHEDULER_NAME_VALUES] = [
    "ddim",
    "euler",
    "euler_a",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "lms",
    "pndm",
    "unipc",
    "heun",
    "kdpm_2_a",
]
"""One of each family: deterministic, ancestral (drawing from the generator), multistep, second order, SDE.
(Every scheduler here matched the pipeline when this was written; these keep the suite quick.)"""


@pytest.mark.parametrize("scheduler", [*MATCHED_SCHEDULERS, "tcd"])
def test_text_to_image_gives_the_pipelines_latents(
    pipeline: StableDiffusionPipeline, scheduler: SCHEDULER_NAME_VALUES
) -> None:
    expected = pipeline_latents(pipeline, scheduler, num_inference_steps=4, guidance_scale=7.5)
    assert torch.equal(run(pipeline, scheduler), expected)


def test_a_cfg_scale_of_one_runs_the_unet_without_the_negative_prompt(pipeline: StableDiffusionPipeline) -> None:
    batches: list[int] = []
    hook = pipeline.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        result = run(pipeline, "euler", cfg_scale=1)
    finally:
        hook.remove()
    assert batches == [1, 1, 1, 1]
    assert torch.equal(result, pipeline_latents(pipeline, "euler", num_inference_steps=4, guidance_scale=1.0))


def test_prompts_of_different_lengths_are_padded_and_masked(pipeline: StableDiffusionPipeline) -> None:
    long_prompt = embeddings(pipeline, " ".join(["a cab"] * 40))
    assert long_prompt.shape[1] > 77
    assert long_prompt.shape[1] % 77 == 0
    result = run(pipeline, "ddim", positive=long_prompt)
    assert result.shape == (1, 4, LATENT_SIZE, LATENT_SIZE)
    assert torch.isfinite(result).all()


def test_a_raising_step_callback_stops_the_loop(pipeline: StableDiffusionPipeline) -> None:
    calls: list[int] = []

    def on_step(step: int, total: int, latents: torch.Tensor) -> None:
        calls.append(step)
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(pipeline, "ddim", on_step=on_step)
    assert calls == [1, 2]


@pytest.mark.parametrize(
    ("steps", "start", "end", "expected"),
    [
        (10, 0.0, 1.0, (0, 10)),
        (10, 0.4, 1.0, (4, 10)),
        (10, 0.9, 1.0, (9, 10)),
        (4, 0.3, 0.5, (2, 2)),
        (7, 0, 0.5, (0, 3)),
    ],
)
def test_step_range_counts_steps_as_image_to_image_strength_does(
    steps: int, start: float, end: float, expected: tuple[int, int]
) -> None:
    assert step_range(steps, start, end) == expected


def test_no_steps_to_run_returns_the_latents(pipeline: StableDiffusionPipeline) -> None:
    latents = torch.ones((1, 4, LATENT_SIZE, LATENT_SIZE))
    assert torch.equal(run(pipeline, "ddim", latents=latents, denoising_start=0.5, denoising_end=0.5), latents)


def test_a_mask_keeps_the_white_area_exactly(pipeline: StableDiffusionPipeline) -> None:
    latents = torch.randn((1, 4, LATENT_SIZE, LATENT_SIZE), generator=torch.Generator().manual_seed(5))
    keep = torch.zeros((1, 1, 32, 32))
    keep[..., :16] = 1.0
    result = run(pipeline, "euler_a", latents=latents, mask=DenoiseMask(keep=keep), denoising_start=0.25)
    assert torch.equal(result[..., : LATENT_SIZE // 2], latents[..., : LATENT_SIZE // 2])
    assert not torch.equal(result[..., LATENT_SIZE // 2 :], latents[..., LATENT_SIZE // 2 :])


def test_an_inpainting_model_gets_the_mask_and_masked_latents_as_input(pipeline: StableDiffusionPipeline) -> None:
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel as UNet

    config = {**pipeline.unet.config, "in_channels": 9}
    torch.manual_seed(0)
    unet = UNet.from_config(config)
    shapes: list[torch.Size] = []
    hook = unet.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape))
    keep = torch.ones((1, 1, LATENT_SIZE, LATENT_SIZE))
    keep[..., 2:6, 2:6] = 0
    try:
        with pytest.raises(ValueError, match="needs a denoise mask"):
            run(pipeline, "ddim", unet)
        result = run(pipeline, "ddim", unet, mask=DenoiseMask(keep))
    finally:
        hook.remove()
    assert shapes[0] == (2, 9, LATENT_SIZE, LATENT_SIZE)
    assert result.shape == (1, 4, LATENT_SIZE, LATENT_SIZE)


def test_noise_needs_no_model_and_continues_as_the_pipelines_generator() -> None:
    noise = make_noise(3, 64, 32)
    assert tuple(noise.shape) == (1, 4, 4, 8)
    generator = torch.Generator("cpu").manual_seed(3)
    assert torch.equal(noise, torch.randn((1, 4, 4, 8), generator=generator))
    assert torch.equal(generator_after_noise(3, noise.shape).get_state(), generator.get_state())


def test_every_scheduler_name_makes_its_scheduler(pipeline: StableDiffusionPipeline) -> None:
    assert set(get_args(SCHEDULER_NAME_VALUES)) == set(SCHEDULERS)
    for name in get_args(SCHEDULER_NAME_VALUES):
        class_name, overrides = SCHEDULERS[name]
        scheduler = make_scheduler(name, pipeline.scheduler.config)
        assert type(scheduler).__name__ == class_name
        assert all(scheduler.config[key] == value for key, value in overrides.items())
