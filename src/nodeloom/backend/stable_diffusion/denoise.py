"""The denoising loop of Stable Diffusion 1.x/2.x, step for step the loop of diffusers' pipelines.

Text-to-image here gives the same latents, bit for bit, as `StableDiffusionPipeline` on the same model, prompt,
seed, scheduler and steps, and image-to-image those of `StableDiffusionImg2ImgPipeline` with
`strength = 1 - denoising_start`. What that takes: timesteps set before `init_noise_sigma` is read (some
schedulers compute it from the timesteps); the unconditional and conditional inputs through the UNet as one
batch of two (two calls differ from one batch by about 1e-5); and the generator that drew the noise, continued,
handed to every `scheduler.step`, where ancestral schedulers draw fresh noise.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

# From their modules: diffusers' lazy top-level names hide the classes' types from mypy.
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

from nodeloom.backend.stable_diffusion.noise import generator_after_noise
from nodeloom.backend.stable_diffusion.schedulers import Scheduler

StepCallback = Callable[[int, int, torch.Tensor], None]
"""Called after each step with the step number (from 1), the number of steps and the latents so far."""

INPAINT_MODEL_CHANNELS = 9
"""An inpainting UNet's input: the latents, the mask, and the latents of the image with the masked area blanked."""


@dataclass(frozen=True)
class DenoiseMask:
    """Where the input latents are kept.

    `keep` is 1 where the input stays and 0 where it is denoised, at image or latent size, `(1, 1, h, w)`.
    `masked_latents`, the latents of the image with the denoised area blanked, feed inpainting models.
    """

    keep: torch.Tensor
    masked_latents: torch.Tensor | None = None


@dataclass(frozen=True)
class AddedConditioning:
    """What SDXL's UNet embeds beside the text: the pooled text embeddings and the time ids (sizes, crop, or the
    refiner's aesthetic score), each `(1, n)`."""

    text_embeds: torch.Tensor
    time_ids: torch.Tensor


@dataclass(frozen=True)
class DenoiseInputs:
    """Everything a run of the loop reads besides the models.

    `noise` alone is text-to-image. `latents` with `noise` is image-to-image: the latents are noised to where
    `denoising_start` falls and denoised from there. `latents` alone are denoised as they are. `denoising_start`
    and `denoising_end` are fractions of the steps. `seed` is the noise's: the schedulers' generator continues
    from it. `cfg_rescale_multiplier` rescales the guided prediction towards the conditional one's spread, for
    models trained with zero terminal SNR (diffusers' `guidance_rescale`). `positive_added` and `negative_added`
    are SDXL's, which its UNet (`addition_embed_type` "text_time") needs and other UNets do not take.
    """

    positive: torch.Tensor
    negative: torch.Tensor
    steps: int
    cfg_scale: float
    seed: int
    noise: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    denoising_start: float = 0.0
    denoising_end: float = 1.0
    cfg_rescale_multiplier: float = 0.0
    mask: DenoiseMask | None = None
    positive_added: AddedConditioning | None = None
    negative_added: AddedConditioning | None = None


def step_range(steps: int, denoising_start: float, denoising_end: float) -> tuple[int, int]:
    """The first step to run and the step to stop before.

    `steps - int(steps * (1 - denoising_start))` is where diffusers' image-to-image starts for a strength of
    `1 - denoising_start`; rounding to 6 places first keeps float error (1 - 0.9 = 0.0999...) from losing a step.
    """
    start = steps - math.floor(round(steps * (1 - denoising_start), 6))
    end = math.floor(round(steps * denoising_end, 6))
    return start, max(start, end)


def _rescaled(guided: torch.Tensor, conditional: torch.Tensor, multiplier: float) -> torch.Tensor:
    """The guided prediction pulled towards the conditional one's standard deviation (Lin et al. 2023, 3.4)."""
    dims = list(range(1, conditional.dim()))
    rescaled = guided * (conditional.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return multiplier * rescaled + (1 - multiplier) * guided


def _pad_tokens(embeds: torch.Tensor, tokens: int) -> torch.Tensor:
    padding = embeds.new_zeros((embeds.shape[0], tokens - embeds.shape[1], embeds.shape[2]))
    return torch.cat([embeds, padding], dim=1)


def _text_batch(inputs: DenoiseInputs, guided: bool, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """The UNet's text inputs: [negative, positive] in one batch when guided, as the pipeline orders them.

    Embeddings of different lengths (a long prompt against a short one) are padded with zeros, which an attention
    mask hides; equal lengths, the usual case, pass no mask, as the pipeline does.
    """
    added = _added_batch(inputs, guided, device, dtype)
    positive = inputs.positive.to(device=device, dtype=dtype)
    if not guided:
        return {"encoder_hidden_states": positive, **added}
    negative = inputs.negative.to(device=device, dtype=dtype)
    tokens = max(positive.shape[1], negative.shape[1])
    if positive.shape[1] == negative.shape[1]:
        return {"encoder_hidden_states": torch.cat([negative, positive]), **added}
    attention_mask = torch.zeros((2, tokens), device=device, dtype=torch.bool)
    attention_mask[0, : negative.shape[1]] = True
    attention_mask[1, : positive.shape[1]] = True
    return {
        "encoder_hidden_states": torch.cat([_pad_tokens(negative, tokens), _pad_tokens(positive, tokens)]),
        "encoder_attention_mask": attention_mask,
        **added,
    }


def _added_batch(inputs: DenoiseInputs, guided: bool, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """SDXL's `added_cond_kwargs`, batched as the text; nothing for a UNet without added conditioning."""
    positive, negative = inputs.positive_added, inputs.negative_added
    if positive is None or negative is None:
        return {}
    conditionings = [negative, positive] if guided else [positive]
    return {
        "added_cond_kwargs": {
            name: torch.cat([getattr(added, name) for added in conditionings]).to(device=device, dtype=dtype)
            for name in ("text_embeds", "time_ids")
        }
    }


def _resized_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if mask.shape[-2:] == like.shape[-2:]:
        return mask.to(device=like.device, dtype=like.dtype)
    resized = torch.nn.functional.interpolate(mask.float(), size=like.shape[-2:], mode="bilinear", antialias=False)
    return resized.to(device=like.device, dtype=like.dtype)


class _Inpainting:
    """Keeps the masked-out latents: a normal UNet's latents are blended with the input noised to each step's
    level before the step, and with the input itself at the end; an inpainting UNet gets the mask and the
    masked latents as extra input channels instead."""

    def __init__(
        self, mask: DenoiseMask, original: torch.Tensor, noise: torch.Tensor, scheduler: Scheduler, inpaint: bool
    ) -> None:
        self._keep = _resized_mask(mask.keep, original)
        self._original = original
        self._noise = noise
        self._scheduler = scheduler
        self._extra_channels: torch.Tensor | None = None
        if inpaint:
            masked = mask.masked_latents
            masked = torch.where(self._keep < 0.5, 0.0, original) if masked is None else masked.to(original)
            self._extra_channels = torch.cat([1 - self._keep, masked], dim=1)

    def before_step(self, latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        if self._extra_channels is not None:
            return latents
        known = self._scheduler.add_noise(self._original, self._noise, timestep.reshape(1))
        return torch.lerp(latents, known, self._keep)

    def model_input(self, scaled: torch.Tensor) -> torch.Tensor:
        if self._extra_channels is None:
            return scaled
        return torch.cat([scaled, self._extra_channels.expand(scaled.shape[0], -1, -1, -1)], dim=1)

    def finish(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.lerp(latents, self._original, self._keep)


def denoise(
    unet: UNet2DConditionModel,
    scheduler: Scheduler,
    inputs: DenoiseInputs,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Runs the steps between `denoising_start` and `denoising_end`; returns the latents on the CPU.

    `unet` and `scheduler` must be this run's own: the scheduler keeps the run's state. `on_step` may raise to
    stop the run (a cancel) between two steps.
    """
    device, dtype = unet.device, unet.dtype
    if inputs.noise is None and inputs.latents is None:
        raise ValueError("Denoising needs noise, latents, or both")

    scheduler.set_timesteps(inputs.steps, device=device)
    start, end = step_range(inputs.steps, inputs.denoising_start, inputs.denoising_end)
    order: int = scheduler.order
    # Some schedulers add a timestep beyond the steps (PNDM): a run to the end takes them all, as the pipeline.
    timesteps = scheduler.timesteps[start * order : None if end == inputs.steps else end * order]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * order)

    reference = inputs.noise if inputs.noise is not None else inputs.latents
    assert reference is not None
    original = (torch.zeros_like(reference) if inputs.latents is None else inputs.latents).to(device, dtype)
    if len(timesteps) == 0:
        return original.to("cpu")

    # The noise that masks and image-to-image need when none was given: from the seed, as the noise node makes it.
    noise = (
        inputs.noise
        if inputs.noise is not None
        else torch.randn(
            reference.shape, generator=torch.Generator("cpu").manual_seed(inputs.seed), dtype=torch.float32
        )
    )
    noise = noise.to(device, dtype)
    if inputs.latents is None and start == 0:
        latents = noise * scheduler.init_noise_sigma
    elif inputs.noise is not None:
        latents = scheduler.add_noise(original, noise, timesteps[:1])
    else:
        latents = original

    step_parameters = inspect.signature(scheduler.step).parameters
    step_kwargs: dict[str, Any] = {}
    if "generator" in step_parameters:
        step_kwargs["generator"] = generator_after_noise(inputs.seed, reference.shape)
    if "eta" in step_parameters:
        # The pipeline's default, which it passes to every scheduler that takes one (DDIM's own default; TCD's is 0.3).
        step_kwargs["eta"] = 0.0

    inpaint_model = unet.config["in_channels"] == INPAINT_MODEL_CHANNELS
    if inpaint_model and inputs.mask is None:
        raise ValueError("An inpainting model (9 input channels) needs a denoise mask: connect one to denoise_mask")
    inpainting = None if inputs.mask is None else _Inpainting(inputs.mask, original, noise, scheduler, inpaint_model)

    sdxl_unet = unet.config.get("addition_embed_type") == "text_time"
    if sdxl_unet != (inputs.positive_added is not None and inputs.negative_added is not None):
        needed = "needs SDXL conditioning (sdxl_compel_prompt)" if sdxl_unet else "takes no SDXL conditioning"
        raise ValueError(f"This UNet {needed} for both the positive and the negative prompt")

    # The pipeline guides only above 1: at 1 the unconditional half would not change the result.
    guided = inputs.cfg_scale > 1
    text = _text_batch(inputs, guided, device, dtype)
    with torch.no_grad():
        for index, timestep in enumerate(timesteps):
            if inpainting is not None:
                latents = inpainting.before_step(latents, timestep)
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = scheduler.scale_model_input(model_input, timestep)
            if inpainting is not None:
                model_input = inpainting.model_input(model_input)
            noise_pred = unet(model_input, timestep, **text, return_dict=False)[0]
            if guided:
                unconditional, conditional = noise_pred.chunk(2)
                noise_pred = unconditional + inputs.cfg_scale * (conditional - unconditional)
                if inputs.cfg_rescale_multiplier > 0:
                    noise_pred = _rescaled(noise_pred, conditional, inputs.cfg_rescale_multiplier)
            latents = scheduler.step(noise_pred, timestep, latents, **step_kwargs, return_dict=False)[0]
            if on_step is not None:
                on_step(index + 1, len(timesteps), latents)

    if inpainting is not None:
        latents = inpainting.finish(latents)
    result: torch.Tensor = latents.to("cpu")
    return result
