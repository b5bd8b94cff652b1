"""The noise node: seeded latent noise for an image size, stored for the denoising node to load by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import field_validator

from nodeloom.app.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    invocation,
    invocation_output,
)
from nodeloom.app.invocations.fields import InputField, OutputField
from nodeloom.app.invocations.image import SEED_MAX, check_image_size
from nodeloom.app.invocations.latents import LATENT_SCALE_FACTOR, LatentsField, multiple_of_latent_scale
from nodeloom.app.invocations.limits import NodeLimits

if TYPE_CHECKING:
    from nodeloom.app.services.shared.invocation_context import InvocationContext


@invocation_output("noise_output")
class NoiseOutput(BaseInvocationOutput):
    """Invocation noise output"""

    noise: LatentsField = OutputField(description="Noise tensor")
    width: int = OutputField(description="Width of output (px)")
    height: int = OutputField(description="Height of output (px)")


@invocation("noise", title="Create Latent Noise", tags=["latents", "noise"], category="latents", version="1.0.2")
class NoiseInvocation(BaseInvocation):
    """Generates latent noise.

    On the CPU (by default), a seed gives the same noise on every machine: the tensor diffusers' pipelines draw
    as their initial latents from `torch.Generator("cpu").manual_seed(seed)`.
    """

    noise_type: Literal["SD", "FLUX", "FLUX.2", "SD3", "CogView4", "Z-Image", "Anima"] = InputField(
        default="SD", description="Architecture-specific noise type.", not_supported="noise for other models than SD"
    )
    seed: int = InputField(default=0, ge=0, le=SEED_MAX, description="Seed for random number generation")
    width: int = InputField(default=512, gt=0, description="Width of output (px)")
    height: int = InputField(default=512, gt=0, description="Height of output (px)")
    use_cpu: bool = InputField(
        default=True, description="Use CPU for noise generation (for reproducible results across platforms)"
    )

    @field_validator("seed", mode="before")
    @classmethod
    def _modulo_seed(cls, value: Any) -> Any:
        """Wraps a seed past the largest into range, as InvokeAI: a `rand_int` may feed any integer."""
        return value % (SEED_MAX + 1) if isinstance(value, int) else value

    @field_validator("width", "height")
    @classmethod
    def _whole_latents(cls, value: int) -> int:
        return multiple_of_latent_scale(value)

    def check_limits(self, limits: NodeLimits) -> None:
        super().check_limits(limits)
        check_image_size(self, self.width, self.height, limits)

    def invoke(self, context: InvocationContext) -> NoiseOutput:
        from nodeloom.backend.stable_diffusion.noise import make_noise
        from nodeloom.backend.util.devices import choose_execution_device

        device = "cpu"
        if not self.use_cpu and context.config is not None:
            device = choose_execution_device(context.config.device, context.config.precision).device.type
        noise = make_noise(self.seed, self.width, self.height, device)
        return NoiseOutput(
            noise=LatentsField(latents_name=context.tensors.save(noise), seed=self.seed),
            width=noise.shape[3] * LATENT_SCALE_FACTOR,
            height=noise.shape[2] * LATENT_SCALE_FACTOR,
        )
