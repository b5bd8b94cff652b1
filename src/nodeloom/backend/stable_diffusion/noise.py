"""Seeded latent noise, drawn on the CPU so that a seed gives the same noise on every machine."""

from __future__ import annotations

import torch

LATENT_SCALE_FACTOR = 8
"""Stable Diffusion's VAE maps 8x8 pixels to one latent."""

LATENT_CHANNELS = 4


def noise_shape(width: int, height: int) -> tuple[int, int, int, int]:
    """The shape of the noise for an image of `width` x `height` pixels: one latent per 8x8 pixels, as InvokeAI."""
    return (1, LATENT_CHANNELS, height // LATENT_SCALE_FACTOR, width // LATENT_SCALE_FACTOR)


def make_noise(seed: int, width: int, height: int, device: str = "cpu") -> torch.Tensor:
    """Float32 noise for the image size, on the CPU.

    Drawn on the CPU (the default), it is the very tensor diffusers' pipelines draw as their initial latents when
    given `torch.Generator("cpu").manual_seed(seed)`: one `torch.randn` call on that generator. Drawn on a GPU it
    depends on the GPU's generator.
    """
    generator = torch.Generator(device).manual_seed(seed)
    noise = torch.randn(noise_shape(width, height), generator=generator, dtype=torch.float32, device=device)
    return noise.to("cpu")


def generator_after_noise(seed: int, shape: torch.Size) -> torch.Generator:
    """The CPU generator of `seed` as it stands once noise of `shape` was drawn from it.

    A diffusers pipeline hands its generator, after drawing the initial latents, to the scheduler's steps;
    ancestral schedulers draw their fresh noise from it. The noise here was drawn by another node, so the draw is
    replayed (a latent-sized tensor, cheap) to bring the generator to the same state.
    """
    generator = torch.Generator("cpu").manual_seed(seed)
    torch.randn(shape, generator=generator, dtype=torch.float32)
    return generator
