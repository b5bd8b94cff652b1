"""Latents to pixels and back through the VAE, with the pipeline's own arithmetic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

# From its module: diffusers' lazy top-level names hide the class's type from mypy.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from PIL import Image
from torch.nn import functional

from nodeloom.backend.stable_diffusion.noise import LATENT_SCALE_FACTOR


def _set_dtype(vae: AutoencoderKL, dtype: torch.dtype) -> None:
    # torch's own `to`: diffusers' override only adds checks for quantized models, and its decorator hides the
    # signature from mypy.
    torch.nn.Module.to(vae, dtype=dtype)


@contextmanager
def vae_options(vae: AutoencoderKL, fp32: bool, tiled: bool, tile_size: int) -> Iterator[None]:
    """Runs the VAE in float32 and/or tiled while inside, then restores it: it is the cache's copy.

    `tile_size` (pixels, 0 for the model's own) sets the tiles when tiled; fp16 VAEs of SD1 and SDXL can overflow
    to black images, which float32 avoids. A float16 VAE whose config sets `force_upcast` (SDXL's does) runs in
    float32 even without `fp32`, as `StableDiffusionXLPipeline` decodes it.
    """
    dtype = vae.dtype
    saved = (vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size)
    if fp32 or (dtype == torch.float16 and vae.config.get("force_upcast", False)):
        _set_dtype(vae, torch.float32)
    vae.use_tiling = tiled
    if tiled and tile_size > 0:
        vae.tile_sample_min_size = tile_size
        vae.tile_latent_min_size = tile_size // LATENT_SCALE_FACTOR
    try:
        yield
    finally:
        vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size = saved
        _set_dtype(vae, dtype)


def decode_latents(vae: AutoencoderKL, latents: torch.Tensor) -> Image.Image:
    """The RGB image of the first latents in the batch."""
    with torch.no_grad():
        scaled = latents.to(device=vae.device, dtype=vae.dtype) / vae.config["scaling_factor"]
        decoded = vae.decode(scaled, return_dict=False)[0]
    # As diffusers' VaeImageProcessor: to [0, 1], float32 on the CPU, then x255 rounded.
    pixels = (decoded / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy()
    return Image.fromarray((pixels[0] * 255).round().astype(np.uint8))


def _grid_pixels(image: Image.Image) -> torch.Tensor:
    """The image as a `(1, bands, h, w)` tensor in [0, 1], resized down to multiples of 8 pixels if it is not."""
    width, height = image.width - image.width % LATENT_SCALE_FACTOR, image.height - image.height % LATENT_SCALE_FACTOR
    if (width, height) != image.size:
        image = image.resize((width, height), resample=Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
    if pixels.dim() == 2:
        pixels = pixels.unsqueeze(-1)
    return pixels.permute(2, 0, 1).unsqueeze(0).contiguous()


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """The image as a `(1, 3, h, w)` tensor in [-1, 1], as the VAE reads it; sizes are cut to multiples of 8."""
    return _grid_pixels(image.convert("RGB")) * 2.0 - 1.0


def mask_to_tensor(mask: Image.Image) -> torch.Tensor:
    """A greyscale mask as a `(1, 1, h, w)` tensor in [0, 1] (white is 1); sizes are cut to multiples of 8."""
    return _grid_pixels(mask.convert("L"))


def blank_masked_area(image: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The image tensor with the pixels where `keep` is under 0.5 set to 0 (mid grey), as inpainting models
    expect their masked image."""
    keep = functional.interpolate(keep, size=image.shape[-2:], mode="bilinear", antialias=False)
    return image * (keep >= 0.5)


def encode_image(vae: AutoencoderKL, image: torch.Tensor) -> torch.Tensor:
    """The latents of a `(1, 3, h, w)` image tensor in [-1, 1], on the CPU.

    The latent distribution's mean, not a sample: the same image always gives the same latents (InvokeAI samples
    without a seed).
    """
    with torch.no_grad():
        distribution = vae.encode(image.to(device=vae.device, dtype=vae.dtype)).latent_dist
        latents: torch.Tensor = distribution.mode() * vae.config["scaling_factor"]
    return latents.to("cpu")
