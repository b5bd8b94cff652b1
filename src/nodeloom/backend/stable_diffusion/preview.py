"""A cheap preview of latents, without the VAE: a fixed linear map from the 4 latent channels to RGB."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

SD1_LATENT_RGB_FACTORS = (
    (0.3444, 0.1385, 0.0670),
    (0.1247, 0.4027, 0.1494),
    (-0.3192, 0.2513, 0.2103),
    (-0.1307, -0.1874, -0.7445),
)
"""Each SD1 latent channel's contribution to red, green and blue, fitted by least squares on decoded images
(the factors InvokeAI and other UIs use for SD1 previews)."""


def preview_image(latents: torch.Tensor) -> Image.Image:
    """The first latents of the batch as an RGB image of the latents' size (an eighth of the image's)."""
    factors = torch.tensor(SD1_LATENT_RGB_FACTORS, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latents[0].detach().to("cpu", torch.float32), factors)
    pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    return Image.fromarray(np.ascontiguousarray(pixels))
