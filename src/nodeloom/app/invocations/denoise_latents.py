"""The denoising node: noise and/or latents, conditioned on prompts, denoised by a UNet and a scheduler.

The loop itself is `nodeloom.backend.stable_diffusion.denoise`, imported inside `invoke` with torch. Each step
reports progress with a preview, and a canceled session stops at the next step (`signal_progress` raises).
"""

from __future__ import annotations

import base64
import io
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from pydantic import field_validator

from nodeloom.app.invocations.baseinvocation import BaseInvocation, invocation
from nodeloom.app.invocations.compel import ConditioningField
from nodeloom.app.invocations.fields import Input, InputField
from nodeloom.app.invocations.latents import DenoiseMaskField, LatentsField, LatentsOutput
from nodeloom.app.invocations.model import ModelFieldDescriptions, UNetField, lock_loras
from nodeloom.app.services.events.events_common import ProgressImage
from nodeloom.backend.stable_diffusion.schedulers import SCHEDULER_NAME_VALUES
from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from nodeloom.app.services.shared.invocation_context import InvocationContext
    from nodeloom.backend.stable_diffusion.denoise import AddedConditioning, DenoiseMask

Conditionings = ConditioningField | list[ConditioningField]

HIDIFFUSION_ONLY = "Read only with HiDiffusion, which is not supported yet."


class RegionalPromptsNotSupportedError(NodeloomError):
    """A conditioning carries a region mask: regional prompts are not supported yet."""


def preview_data_url(image: Image) -> str:
    """The preview as a JPEG data URL, the form progress events carry."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@invocation(
    "denoise_latents",
    title="Denoise - SD1.5, SDXL",
    tags=["latents", "denoise", "txt2img", "t2i", "t2l", "img2img", "i2i", "l2l"],
    category="latents",
    version="1.5.3",
)
class DenoiseLatentsInvocation(BaseInvocation):
    """Denoises noisy latents to decodable images.

    `noise` alone is text-to-image; `latents` with `noise` is image-to-image from `denoising_start`; with a
    `denoise_mask`, the latents where the mask is white are kept. The UNet runs with the UNet field's LoRAs
    added and, with seamless axes, with wrapping convolutions, both undone when the node ends. Several
    conditionings in a list are joined along the token axis.
    """

    positive_conditioning: Conditionings = InputField(
        description="Positive conditioning tensor", input=Input.Connection, ui_order=0
    )
    negative_conditioning: Conditionings = InputField(
        description="Negative conditioning tensor", input=Input.Connection, ui_order=1
    )
    noise: LatentsField | None = InputField(
        default=None, description="Noise tensor", input=Input.Connection, ui_order=3
    )
    steps: int = InputField(default=10, gt=0, description="Number of steps to run")
    cfg_scale: float = InputField(default=7.5, ge=1, description="Classifier-Free Guidance scale", title="CFG Scale")
    denoising_start: float = InputField(
        default=0.0, ge=0, le=1, description="When to start denoising, expressed a percentage of total steps"
    )
    denoising_end: float = InputField(
        default=1.0, ge=0, le=1, description="When to stop denoising, expressed a percentage of total steps"
    )
    scheduler: SCHEDULER_NAME_VALUES = InputField(
        default="euler", description="Scheduler to use during inference", ui_type="SchedulerField"
    )
    unet: UNetField = InputField(
        description=ModelFieldDescriptions.unet, input=Input.Connection, title="UNet", ui_order=2
    )
    cfg_rescale_multiplier: float = InputField(
        default=0,
        ge=0,
        lt=1,
        title="CFG Rescale Multiplier",
        description="Rescale multiplier for CFG guidance, used for models trained with zero-terminal SNR",
    )
    control: Any = InputField(
        default=None,
        description="ControlNet(s) to apply",
        input=Input.Connection,
        ui_order=5,
        not_supported="ControlNets",
    )
    ip_adapter: Any = InputField(
        default=None,
        description="IP-Adapter to apply",
        title="IP-Adapter",
        input=Input.Connection,
        ui_order=6,
        not_supported="IP-Adapters",
    )
    t2i_adapter: Any = InputField(
        default=None,
        description="T2I-Adapter(s) to apply",
        title="T2I-Adapter",
        input=Input.Connection,
        ui_order=7,
        not_supported="T2I-Adapters",
    )
    hidiffusion: bool = InputField(
        default=False,
        description="Whether to use HiDiffusion, for images larger than the model was trained on",
        title="HiDiffusion",
        not_supported="HiDiffusion",
    )
    # InvokeAI reads these only with `hidiffusion` on, which is refused: at any value they change nothing.
    hidiffusion_raunet: bool = InputField(
        default=True, description=HIDIFFUSION_ONLY + " Whether to use RAU-Net", title="HiDiffusion: RAU-Net"
    )
    hidiffusion_window_attn: bool = InputField(
        default=True,
        description=HIDIFFUSION_ONLY + " Whether to use window attention",
        title="HiDiffusion: Window Attention",
    )
    hidiffusion_t1_ratio: float = InputField(
        default=0.4, ge=0, le=1, description=HIDIFFUSION_ONLY + " The T1 ratio", title="HiDiffusion: T1 Ratio"
    )
    hidiffusion_t2_ratio: float = InputField(
        default=0.0, ge=0, le=1, description=HIDIFFUSION_ONLY + " The T2 ratio", title="HiDiffusion: T2 Ratio"
    )
    latents: LatentsField | None = InputField(
        default=None, description="Latents tensor", input=Input.Connection, ui_order=4
    )
    denoise_mask: DenoiseMaskField | None = InputField(
        default=None,
        description="A mask of the region to apply the denoising process to. Values of 0.0 represent the regions "
        "to be fully denoised, and 1.0 represent the regions to be preserved.",
        input=Input.Connection,
        ui_order=8,
    )

    @field_validator("cfg_scale", mode="before")
    @classmethod
    def _one_cfg_scale(cls, value: Any) -> Any:
        if isinstance(value, list):
            raise ValueError("input 'cfg_scale' (a CFG scale per step) is not supported yet; give one number")
        return value

    def invoke(self, context: InvocationContext) -> LatentsOutput:
        from nodeloom.backend.stable_diffusion.denoise import DenoiseInputs, denoise
        from nodeloom.backend.stable_diffusion.lora import apply_loras
        from nodeloom.backend.stable_diffusion.schedulers import make_scheduler
        from nodeloom.backend.stable_diffusion.seamless import seamless

        noise = None if self.noise is None else context.tensors.load(self.noise.latents_name)
        latents = None if self.latents is None else context.tensors.load(self.latents.latents_name)
        # The seed the noise was drawn with lets ancestral schedulers continue its generator, as the pipeline does.
        seed = next((f.seed for f in (self.noise, self.latents) if f is not None and f.seed is not None), 0)
        positive, positive_added = self._embeddings(context, self.positive_conditioning)
        negative, negative_added = self._embeddings(context, self.negative_conditioning)
        inputs = DenoiseInputs(
            positive=positive,
            negative=negative,
            positive_added=positive_added,
            negative_added=negative_added,
            steps=self.steps,
            cfg_scale=self.cfg_scale,
            seed=seed,
            noise=noise,
            latents=latents,
            denoising_start=self.denoising_start,
            denoising_end=self.denoising_end,
            cfg_rescale_multiplier=self.cfg_rescale_multiplier,
            mask=self._mask(context),
        )
        with context.models.load(self.unet.scheduler) as model_scheduler:
            scheduler = make_scheduler(self.scheduler, model_scheduler.config)

        def on_step(step: int, total: int, step_latents: torch.Tensor) -> None:
            from nodeloom.backend.stable_diffusion.preview import preview_image

            preview = preview_image(step_latents)
            image = ProgressImage(width=preview.width, height=preview.height, dataURL=preview_data_url(preview))
            context.util.signal_progress(f"Denoising step {step} of {total}", step / total, image=image)

        with ExitStack() as stack:
            unet = stack.enter_context(context.models.load(self.unet.unet))
            stack.enter_context(apply_loras(unet, lock_loras(context, stack, self.unet.loras), "unet"))
            stack.enter_context(seamless([unet], self.unet.seamless_axes))
            context.util.signal_progress("Denoising", 0.0)
            result = denoise(unet, scheduler, inputs, on_step)
        return LatentsOutput.build(context.tensors.save(result), result)

    @staticmethod
    def _embeddings(
        context: InvocationContext, conditionings: Conditionings
    ) -> tuple[torch.Tensor, AddedConditioning | None]:
        """The conditionings' embeddings, joined along the token axis when there are several, and SDXL's added
        conditioning: the first one's pooled embeddings and time ids, as InvokeAI takes them."""
        import torch

        from nodeloom.backend.stable_diffusion.denoise import AddedConditioning
        from nodeloom.backend.stable_diffusion.prompts import TextConditioning

        fields = conditionings if isinstance(conditionings, list) else [conditionings]
        if any(field.mask is not None for field in fields):
            raise RegionalPromptsNotSupportedError(
                "A conditioning has a mask: regional prompts are not supported yet; remove the compel node's mask"
            )
        stored = [TextConditioning.from_stored(context.conditioning.load(f.conditioning_name)) for f in fields]
        if len({conditioning.is_sdxl for conditioning in stored}) > 1:
            raise ValueError("SDXL conditioning cannot be joined with SD-1/2 conditioning: use one prompt node kind")
        embeds = torch.cat([conditioning.embeds for conditioning in stored], dim=1)
        first = stored[0]
        if first.pooled_embeds is None or first.add_time_ids is None:
            return embeds, None
        return embeds, AddedConditioning(text_embeds=first.pooled_embeds, time_ids=first.add_time_ids)

    def _mask(self, context: InvocationContext) -> DenoiseMask | None:
        from nodeloom.backend.stable_diffusion.denoise import DenoiseMask

        if self.denoise_mask is None:
            return None
        masked_name = self.denoise_mask.masked_latents_name
        return DenoiseMask(
            keep=context.tensors.load(self.denoise_mask.mask_name),
            masked_latents=None if masked_name is None else context.tensors.load(masked_name),
        )
