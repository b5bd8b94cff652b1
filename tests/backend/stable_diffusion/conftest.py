from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tests.diffusion_helpers import load_pipeline

if TYPE_CHECKING:
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline


@pytest.fixture(scope="module")
def pipeline(tiny_sd_model: Path) -> StableDiffusionPipeline:
    """The tiny model as a diffusers pipeline, the reference the pieces are checked against; tests may swap its
    scheduler, never change its models."""
    return load_pipeline(tiny_sd_model)
