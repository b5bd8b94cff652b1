"""Model configs: what nodeloom knows about each installed model, one class per type and format.

Field names follow InvokeAI's where the concept is the same. Unlike InvokeAI, one config class covers a type and
format for every base (`base` is a field, not part of the class).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from nodeloom.backend.model_manager.taxonomy import (
    BaseModelType,
    ModelFormat,
    ModelType,
    SchedulerPredictionType,
    SubModelType,
)
from nodeloom.backend.stable_diffusion.schedulers import SCHEDULER_NAME_VALUES
from nodeloom.errors import NodeloomError


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


class CheckpointConfigBase(ModelConfigBase):
    """A model in one file, in the original Stable Diffusion key layout, converted to diffusers when loaded."""

    format: Literal[ModelFormat.Checkpoint] = ModelFormat.Checkpoint
    config_path: str | None = Field(
        default=None,
        description="A diffusers folder whose configs describe the model (a whole pipeline's for a main model, a "
        "VAE's for a VAE); None takes the configs nodeloom ships for the model's base and prediction type",
    )


class MainCheckpointConfig(CheckpointConfigBase):
    """A Stable Diffusion pipeline in one file."""

    type: Literal[ModelType.Main] = ModelType.Main
    prediction_type: SchedulerPredictionType = Field(
        default=SchedulerPredictionType.Epsilon,
        description="What the UNet predicts: the noise (epsilon) or the velocity (v_prediction, SD-2's 768 models)",
    )
    default_settings: MainModelDefaultSettings | None = Field(
        default=None, description="Default settings for this model"
    )


class VAECheckpointConfig(CheckpointConfigBase):
    """A standalone VAE in one file."""

    type: Literal[ModelType.VAE] = ModelType.VAE


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


class TextualInversionFolderConfig(ModelConfigBase):
    """A textual-inversion embedding in a folder, as diffusers saves one."""

    type: Literal[ModelType.TextualInversion] = ModelType.TextualInversion
    format: Literal[ModelFormat.EmbeddingFolder] = ModelFormat.EmbeddingFolder


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
    | Annotated[VAECheckpointConfig, _tag(VAECheckpointConfig)]
    | Annotated[LoRALyCORISConfig, _tag(LoRALyCORISConfig)]
    | Annotated[TextualInversionFileConfig, _tag(TextualInversionFileConfig)]
    | Annotated[TextualInversionFolderConfig, _tag(TextualInversionFolderConfig)],
    Discriminator(
        _type_and_format,
        custom_error_type="model_type_and_format",
        custom_error_message="No kind of model has this type and format",
    ),
]
"""Any model's config, chosen by its `type` and `format`."""

AnyModelConfigValidator: TypeAdapter[AnyModelConfig] = TypeAdapter(AnyModelConfig)


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
