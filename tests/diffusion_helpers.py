"""Helpers for the diffusion tests: the reference diffusers pipelines on the tiny model, and running the diffusion
nodes against real services with the tiny model installed.

The tiny VAE maps 2x2 pixels to a latent where Stable Diffusion's maps 8x8: noise for `w` x `h` pixels (InvokeAI's
1/8 latents) decodes to a `w/4` x `h/4` image here, and the pipelines are asked for that size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tests.tiny_model import quiet_torch

from nodeloom.app.invocations.baseinvocation import BaseInvocation, BaseInvocationOutput
from nodeloom.app.invocations.fields import ModelIdentifierField
from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.events.events_common import ProgressImage
from nodeloom.app.services.invocation_services import InvocationServices, build_services
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.app.services.shared.invocation_context import (
    InvocationContext,
    InvocationContextData,
    UtilInterface,
)
from nodeloom.app.services.shared.invocation_context_models import ModelsInterface
from nodeloom.app.services.shared.invocation_context_stores import (
    BoardsInterface,
    ConditioningInterface,
    ContextStores,
    ImagesInterface,
    TensorsInterface,
)
from nodeloom.backend.model_manager.taxonomy import BaseModelType
from nodeloom.backend.stable_diffusion.schedulers import SCHEDULER_NAME_VALUES

if TYPE_CHECKING:
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import StableDiffusionImg2ImgPipeline

DIFFUSERS_NUMPY_WARNINGS = (
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
    "ignore:__array_wrap__ must accept context and return_scalar arguments:DeprecationWarning",
)
"""Diffusers' sigma-based schedulers (Euler, KDPM2, ...) run numpy on tensors, which numpy 2 warns about with
torch's `Tensor.__array__` and `__array_wrap__`; harmless, and not ours to fix. Apply with `filter_diffusers_numpy`."""

filter_diffusers_numpy = [pytest.mark.filterwarnings(warning) for warning in DIFFUSERS_NUMPY_WARNINGS]

PROMPT = "a cab"
NEGATIVE_PROMPT = "bad"
SEED = 1234
NOISE_SIZE = 64
"""The noise nodes' width and height: 8x8 latents, a 16x16 image from the tiny VAE."""


def image_size(pipeline: StableDiffusionPipeline | StableDiffusionImg2ImgPipeline, noise_size: int) -> int:
    """The pixel size the tiny pipeline gives for latents of noise made for `noise_size` pixels."""
    return noise_size // 8 * pipeline.vae_scale_factor


def load_pipeline(folder: Path) -> StableDiffusionPipeline:
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline

    quiet_torch()
    pipeline = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@dataclass
class Progress:
    """What a node reported through `signal_progress`."""

    message: str
    percentage: float | None
    image: ProgressImage | None


@dataclass
class NodeRunner:
    """Runs nodes against the real services (images, stored objects, models) with the tiny model installed."""

    services: InvocationServices
    model: ModelIdentifierField
    progress: list[Progress] = field(default_factory=list)

    @classmethod
    def start(
        cls, root: Path, tiny_model: Path, base: BaseModelType | None = BaseModelType.StableDiffusion1
    ) -> NodeRunner:
        """Installs `tiny_model` with `base`, or with the base probing finds when None."""
        quiet_torch()
        services = build_services(load_config(root, model_install_roots=[tiny_model.parent]))
        config = services.model_manager.install.install_path(tiny_model, ModelRecordChanges(base=base))
        return cls(services=services, model=ModelIdentifierField.from_config(config))

    def context(self, node: BaseInvocation, is_canceled: Callable[[], bool] = lambda: False) -> InvocationContext:
        data = InvocationContextData(invocation=node, source_invocation_id=node.id, session_id="diffusion-tests")

        def on_progress(message: str, percentage: float | None, image: ProgressImage | None) -> None:
            self.progress.append(Progress(message, percentage, image))

        return InvocationContext(
            data=data,
            util=UtilInterface(is_canceled, on_progress),
            config=self.services.config,
            stores=ContextStores(
                images=ImagesInterface(self.services.images, data),
                boards=BoardsInterface(self.services.boards),
                tensors=TensorsInterface(self.services.tensors),
                conditioning=ConditioningInterface(self.services.conditioning),
                models=ModelsInterface(self.services.model_manager, data),
            ),
        )

    def run(self, node: BaseInvocation, is_canceled: Callable[[], bool] = lambda: False) -> Any:
        output: BaseInvocationOutput = node.invoke_internal(self.context(node, is_canceled))
        return output

    def close(self) -> None:
        self.services.database.close()


def sdxl_reference_image(
    models: tuple[Path, Path],
    scheduler: SCHEDULER_NAME_VALUES,
    negative_prompt: str | None,
    steps: int,
    conditioned_size: int,
    refiner_start: float | None = None,
) -> Any:
    """The RGB pixels diffusers makes of `PROMPT` with the tiny SDXL base (`models[0]`), of noise for `NOISE_SIZE`
    pixels at `SEED`, conditioned on `conditioned_size` as original and target size; with `refiner_start`, the
    base stops there and the refiner (`models[1]`) takes its latents, diffusers' base+refiner recipe."""
    import numpy as np
    import torch
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_img2img import (
        StableDiffusionXLImg2ImgPipeline,
    )

    from nodeloom.backend.stable_diffusion.schedulers import make_scheduler

    quiet_torch()
    base = StableDiffusionXLPipeline.from_pretrained(models[0], local_files_only=True, add_watermarker=False)
    base.scheduler = make_scheduler(scheduler, base.scheduler.config)
    base.set_progress_bar_config(disable=True)
    pixels = NOISE_SIZE // 8 * base.vae_scale_factor
    generator = torch.Generator("cpu").manual_seed(SEED)
    sizes = {"original_size": (conditioned_size, conditioned_size), "target_size": (conditioned_size,) * 2}
    recipe = {"num_inference_steps": steps, "guidance_scale": 7.5, "negative_prompt": negative_prompt}
    if refiner_start is None:
        image = base(PROMPT, width=pixels, height=pixels, generator=generator, **sizes, **recipe).images[0]
        return np.asarray(image)
    latents = base(
        PROMPT,
        width=pixels,
        height=pixels,
        denoising_end=refiner_start,
        output_type="latent",
        generator=generator,
        **sizes,
        **recipe,
    ).images
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(models[1], local_files_only=True, add_watermarker=False)
    refiner.scheduler = make_scheduler(scheduler, refiner.scheduler.config)
    refiner.set_progress_bar_config(disable=True)
    image = refiner(
        PROMPT,
        image=latents,
        denoising_start=refiner_start,
        original_size=sizes["original_size"],
        generator=generator,
        **recipe,
    ).images[0]
    return np.asarray(image)
