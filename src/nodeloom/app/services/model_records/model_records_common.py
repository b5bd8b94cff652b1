"""Model configs (what nodeloom knows about each installed model), the changes they accept, and their errors.

Names and values follow InvokeAI's taxonomy (`BaseModelType`, `ModelType`, `ModelFormat`, `SubModelType`) and
config fields where the concept is the same, so that a client of either reads the other's JSON. Unlike InvokeAI,
one config class covers a type and format for every base (`base` is a field, not part of the class).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from nodeloom.backend.stable_diffusion.schedulers import SCHEDULER_NAME_VALUES
from nodeloom.errors import NodeloomError


class BaseModelType(StrEnum):
    """The architecture a model belongs to; `any` for models that work with every one."""

    Any = "any"
    StableDiffusion1 = "sd-1"
    StableDiffusion2 = "sd-2"
    StableDiffusionXL = "sdxl"


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


class SubModelType(StrEnum):
    """A part of a main model, loaded on its own."""

    UNet = "unet"
    TextEncoder = "text_encoder"
    TextEncoder2 = "text_encoder_2"
    Tokenizer = "tokenizer"
    Tokenizer2 = "tokenizer_2"
    VAE = "vae"
    Scheduler = "scheduler"


"""The schedulers a model's default settings may name, with InvokeAI's names."""


def _new_key() -> str:
    return str(uuid4())


class MainModelDefaultSettings(BaseModel):
    """The generation settings a main model works best with; each one left None has no recommendation."""

    model_config = ConfigDict(extra="forbid")

    steps: int | None = Field(default=None, gt=0, description="Default number of steps for this model")
    cfg_scale: float | None = Field(default=None, ge=1, description="Default CFG scale for this model")
    scheduler: SCHEDULER_NAME_VALUES | None = Field(default=None, description="Default scheduler for this model")
    width: int | None = Field(default=None, multiple_of=8, ge=64, description="Default width for this model")
    height: int | None = Field(default=None, multiple_of=8, ge=64, description="Default height for this model")


class ModelConfigBase(BaseModel):
    """The fields every model config has. Each subclass fixes `type` and `format` with a literal."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    key: str = Field(default_factory=_new_key, description="A unique key for this model")
    hash: str = Field(description="The hash of the model's file(s): 'blake2b:' and 64 hex digits")
    path: str = Field(
        description="Where the model is: absolute, or relative to the models folder for a model copied into it"
    )
    file_size: int = Field(ge=0, description="The size of the model's file(s) in bytes")
    name: str = Field(min_length=1, description="Name of the model")
    description: str | None = Field(default=None, description="Model description")
    source: str = Field(description="Where the model was installed from (a path)")
    base: BaseModelType = Field(description="The architecture the model belongs to")
    created_at: str | None = Field(
        default=None, description="When the model was installed (ISO 8601, UTC); set by the record store"
    )
    updated_at: str | None = Field(
        default=None, description="When the record last changed (ISO 8601, UTC); set by the record store"
    )


class MainDiffusersConfig(ModelConfigBase):
    """A Stable Diffusion pipeline in a diffusers folder; each submodel loads on its own."""

    type: Literal[ModelType.Main] = ModelType.Main
    format: Literal[ModelFormat.Diffusers] = ModelFormat.Diffusers
    submodels: list[SubModelType] = Field(description="The parts the folder holds")
    default_settings: MainModelDefaultSettings | None = Field(
        default=None, description="Default settings for this model"
    )


class MainCheckpointConfig(ModelConfigBase):
    """A Stable Diffusion pipeline in one file; recognised, but not loadable until converted to diffusers."""

    type: Literal[ModelType.Main] = ModelType.Main
    format: Literal[ModelFormat.Checkpoint] = ModelFormat.Checkpoint
    default_settings: MainModelDefaultSettings | None = Field(
        default=None, description="Default settings for this model"
    )


class VAEDiffusersConfig(ModelConfigBase):
    """A standalone VAE in a diffusers folder."""

    type: Literal[ModelType.VAE] = ModelType.VAE
    format: Literal[ModelFormat.Diffusers] = ModelFormat.Diffusers


class LoRALyCORISConfig(ModelConfigBase):
    """A LoRA weights file."""

    type: Literal[ModelType.LoRA] = ModelType.LoRA
    format: Literal[ModelFormat.LyCORIS] = ModelFormat.LyCORIS


class TextualInversionFileConfig(ModelConfigBase):
    """A textual-inversion embedding in one file."""

    type: Literal[ModelType.TextualInversion] = ModelType.TextualInversion
    format: Literal[ModelFormat.EmbeddingFile] = ModelFormat.EmbeddingFile


def _type_and_format(value: Any) -> str:
    """The tag choosing a config class: "{type}.{format}" of a config or of its dict."""
    if isinstance(value, dict):
        return f"{value.get('type')}.{value.get('format')}"
    return f"{getattr(value, 'type', None)}.{getattr(value, 'format', None)}"


def _tag(config_class: type[ModelConfigBase]) -> Tag:
    return Tag(_type_and_format({name: config_class.model_fields[name].default for name in ("type", "format")}))


AnyModelConfig = Annotated[
    Annotated[MainDiffusersConfig, _tag(MainDiffusersConfig)]
    | Annotated[MainCheckpointConfig, _tag(MainCheckpointConfig)]
    | Annotated[VAEDiffusersConfig, _tag(VAEDiffusersConfig)]
    | Annotated[LoRALyCORISConfig, _tag(LoRALyCORISConfig)]
    | Annotated[TextualInversionFileConfig, _tag(TextualInversionFileConfig)],
    Discriminator(
        _type_and_format,
        custom_error_type="model_type_and_format",
        custom_error_message="No kind of model has this type and format",
    ),
]
"""Any model's config, chosen by its `type` and `format`."""

AnyModelConfigValidator: TypeAdapter[AnyModelConfig] = TypeAdapter(AnyModelConfig)


class ModelRecordChanges(BaseModel):
    """Changes to a model's config, or overrides of what probing found when installing; None leaves a field as is."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, description="Name of the model")
    description: str | None = Field(default=None, description="Model description")
    base: BaseModelType | None = Field(default=None, description="The base model")
    type: ModelType | None = Field(default=None, description="The type of model")
    default_settings: MainModelDefaultSettings | None = Field(
        default=None, description="Default settings for this model (main models only)"
    )


class UnknownModelError(NodeloomError):
    """No model has that key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"No model has the key '{key}'")
        self.key = key


class DuplicateModelError(NodeloomError):
    """That model is installed already."""


class InvalidModelConfigError(NodeloomError):
    """The model's config, as given or as changed, is not valid."""


def validate_model_config(data: dict[str, Any]) -> AnyModelConfig:
    """The config made of `data`; `InvalidModelConfigError` naming each field that is wrong."""
    try:
        return AnyModelConfigValidator.validate_python(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'][1:]) or 'config'}: {e['msg']}" for e in error.errors()
        )
        raise InvalidModelConfigError(
            f"A {data.get('type')} model in {data.get('format')} format cannot have this config: {problems}"
        ) from error
