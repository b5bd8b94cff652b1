"""Latents nodes: the VAE between images and latents (l2i, i2l) and denoise masks, with InvokeAI's names.

Latents and masks travel between nodes by name, stored with `context.tensors`. torch is imported inside `invoke`
only, so loading the node library never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, field_validator

from nodeloom.app.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    invocation,
    invocation_output,
)
from nodeloom.app.invocations.fields import ImageField, Input, InputField, OutputField
from nodeloom.app.invocations.image import ImageOutput
from nodeloom.app.invocations.mixins import WithBoard, WithMetadata
from nodeloom.app.invocations.model import ModelFieldDescriptions, VAEField

if TYPE_CHECKING:
    import torch

    from nodeloom.app.services.shared.invocation_context import InvocationContext

LATENT_SCALE_FACTOR = 8
"""Pixels per latent along each side."""


def multiple_of_latent_scale(value: int) -> int:
    """Validates a size in pixels that maps onto whole latents."""
    if value % LATENT_SCALE_FACTOR:
        raise ValueError(f"must be a multiple of {LATENT_SCALE_FACTOR}")
    return value


class LatentsField(BaseModel):
    """A latents tensor primitive field"""

    latents_name: str = Field(description="The name of the latents")
    seed: int | None = Field(default=None, description="Seed used to generate this latents")


class DenoiseMaskField(BaseModel):
    """An inpaint mask field"""

    mask_name: str = Field(description="The name of the mask image")
    masked_latents_name: str | None = Field(default=None, description="The name of the masked image latents")


@invocation_output("latents_output")
class LatentsOutput(BaseInvocationOutput):
    """Base class for nodes that output a single latents tensor"""

    latents: LatentsField = OutputField(description="Latents tensor")
    width: int = OutputField(description="Width of output (px)")
    height: int = OutputField(description="Height of output (px)")

    @classmethod
    def build(cls, latents_name: str, latents: torch.Tensor, seed: int | None = None) -> LatentsOutput:
        return cls(
            latents=LatentsField(latents_name=latents_name, seed=seed),
            width=latents.shape[3] * LATENT_SCALE_FACTOR,
            height=latents.shape[2] * LATENT_SCALE_FACTOR,
        )


@invocation_output("denoise_mask_output")
class DenoiseMaskOutput(BaseInvocationOutput):
    """Base class for nodes that output a single image"""

    denoise_mask: DenoiseMaskField = OutputField(description="Mask for denoise model run")


TILED = "Processing using overlapping tiles (reduce memory consumption)"
TILE_SIZE = (
    "The tile size for VAE tiling in pixels (image space). If set to 0, the default tile size for the model will be "
    "used."
)
FP32 = (
    "Whether or not to use full float32 precision (off: the precision the VAE was loaded in, or float32 for a "
    "float16 VAE whose config sets force_upcast)"
)


class VAEOptions(BaseModel):
    """The VAE settings the VAE nodes share."""

    tiled: bool = InputField(default=False, description=TILED)
    tile_size: int = InputField(default=0, ge=0, description=TILE_SIZE)
    fp32: bool = InputField(default=False, description=FP32)

    @field_validator("tile_size")
    @classmethod
    def _whole_latents(cls, value: int) -> int:
        return multiple_of_latent_scale(value)


@invocation(
    "l2i",
    title="Latents to Image - SD1.5, SDXL",
    tags=["latents", "image", "vae", "l2i"],
    category="latents",
    version="1.3.2",
)
class LatentsToImageInvocation(BaseInvocation, VAEOptions, WithMetadata, WithBoard):
    """Generates an image from latents.

    With seamless axes on the VAE field, its convolutions wrap while it decodes, and no longer after.
    """

    latents: LatentsField = InputField(description="Latents tensor", input=Input.Connection)
    vae: VAEField = InputField(description=ModelFieldDescriptions.vae, input=Input.Connection)

    def invoke(self, context: InvocationContext) -> ImageOutput:
        from nodeloom.backend.stable_diffusion.seamless import seamless
        from nodeloom.backend.stable_diffusion.vae import decode_latents, vae_options

        latents = context.tensors.load(self.latents.latents_name)
        with (
            context.models.load(self.vae.vae) as vae,
            seamless([vae], self.vae.seamless_axes),
            vae_options(vae, self.fp32, self.tiled, self.tile_size),
        ):
            context.util.signal_progress("Running VAE decoder")
            image = decode_latents(vae, latents)
        return ImageOutput.build(context.images.save(image=image))


@invocation(
    "i2l", title="Image to Latents", tags=["latents", "image", "vae", "i2l"], category="latents", version="1.1.0"
)
class ImageToLatentsInvocation(BaseInvocation, VAEOptions):
    """Encodes an image into latents: the mean of the VAE's latent distribution, so the same image always gives
    the same latents. Sizes that are not multiples of 8 are resized down to them."""

    image: ImageField = InputField(description="The image to encode")
    vae: VAEField = InputField(description=ModelFieldDescriptions.vae, input=Input.Connection)
    color_compensation: Literal["None", "SDXL"] = InputField(
        default="None",
        description="Apply VAE scaling compensation when encoding images (reduces color drift).",
        not_supported="colour compensation for SDXL VAEs",
    )

    def invoke(self, context: InvocationContext) -> LatentsOutput:
        from nodeloom.backend.stable_diffusion.vae import encode_image, image_to_tensor, vae_options

        image = image_to_tensor(context.images.get_pil(self.image.image_name))
        with context.models.load(self.vae.vae) as vae, vae_options(vae, self.fp32, self.tiled, self.tile_size):
            context.util.signal_progress("Running VAE encoder")
            latents = encode_image(vae, image)
        return LatentsOutput.build(context.tensors.save(latents), latents)


@invocation(
    "create_denoise_mask", title="Create Denoise Mask", tags=["mask", "denoise"], category="latents", version="1.0.2"
)
class CreateDenoiseMaskInvocation(BaseInvocation):
    """Creates mask for denoising model run.

    White in the mask keeps the image, black is denoised. With an image, the latents of the image with the
    black area blanked are stored too, for inpainting models.
    """

    vae: VAEField = InputField(description=ModelFieldDescriptions.vae, input=Input.Connection, ui_order=0)
    image: ImageField | None = InputField(default=None, description="Image which will be masked", ui_order=1)
    mask: ImageField = InputField(description="The mask to use when pasting", ui_order=2)
    tiled: bool = InputField(default=False, description=TILED, ui_order=3)
    fp32: bool = InputField(default=False, description=FP32, ui_order=4)

    def invoke(self, context: InvocationContext) -> DenoiseMaskOutput:
        from nodeloom.backend.stable_diffusion.vae import (
            blank_masked_area,
            encode_image,
            image_to_tensor,
            mask_to_tensor,
            vae_options,
        )

        mask = mask_to_tensor(context.images.get_pil(self.mask.image_name, mode="L"))
        masked_latents_name = None
        if self.image is not None:
            image = blank_masked_area(image_to_tensor(context.images.get_pil(self.image.image_name)), mask)
            with context.models.load(self.vae.vae) as vae, vae_options(vae, self.fp32, self.tiled, 0):
                context.util.signal_progress("Running VAE encoder")
                masked_latents_name = context.tensors.save(encode_image(vae, image))
        mask_name = context.tensors.save(mask)
        return DenoiseMaskOutput(
            denoise_mask=DenoiseMaskField(mask_name=mask_name, masked_latents_name=masked_latents_name)
        )
