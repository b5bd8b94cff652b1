"""What kinds of model there are: their base architecture, type, storage format and parts.

Names and values follow InvokeAI's taxonomy (`BaseModelType`, `ModelType`, `ModelFormat`, `SubModelType`), so that
a client of either reads the other's JSON.
"""

from __future__ import annotations

from enum import StrEnum


class BaseModelType(StrEnum):
    """The architecture a model belongs to; `any` for models that work with every one."""

    Any = "any"
    StableDiffusion1 = "sd-1"
    StableDiffusion2 = "sd-2"
    StableDiffusionXL = "sdxl"
    StableDiffusionXLRefiner = "sdxl-refiner"
    """SDXL's refiner: a UNet conditioned on the second text encoder only, with an aesthetic score."""


class ModelType(StrEnum):
    """What a model does."""

    Main = "main"
    """A whole pipeline: UNet, text encoder(s), tokenizer(s), VAE and scheduler."""
    VAE = "vae"
    LoRA = "lora"
    TextualInversion = "embedding"


class ModelFormat(StrEnum):
    """How a model is stored on disk."""

    Diffusers = "diffusers"
    """A folder in the layout of Hugging Face diffusers (`model_index.json` or `config.json`, safetensors)."""
    Checkpoint = "checkpoint"
    """A single file holding a whole pipeline, in the original Stable Diffusion key layout."""
    LyCORIS = "lycoris"
    """A LoRA (or LyCORIS) weights file."""
    EmbeddingFile = "embedding_file"
    """A textual-inversion embedding in one file."""
    EmbeddingFolder = "embedding_folder"
    """A textual-inversion embedding in a folder, as diffusers saves one (`learned_embeds.safetensors` or `.bin`)."""


class SubModelType(StrEnum):
    """A part of a main model, loaded on its own."""

    UNet = "unet"
    TextEncoder = "text_encoder"
    TextEncoder2 = "text_encoder_2"
    Tokenizer = "tokenizer"
    Tokenizer2 = "tokenizer_2"
    VAE = "vae"
    Scheduler = "scheduler"


class SchedulerPredictionType(StrEnum):
    """What a UNet was trained to predict; a scheduler must be configured to match."""

    Epsilon = "epsilon"
    """The noise."""
    VPrediction = "v_prediction"
    """The velocity, a mix of the noise and the image (SD-2's 768-pixel models)."""
