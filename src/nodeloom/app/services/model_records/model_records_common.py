"""The changes a model's record accepts, and the errors of the record store.

The configs themselves, and the taxonomy they use, are `nodeloom.backend.model_manager.configs` and `.taxonomy`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from nodeloom.backend.model_manager.configs import MainModelDefaultSettings
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelType, SchedulerPredictionType
from nodeloom.errors import NodeloomError


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
    prediction_type: SchedulerPredictionType | None = Field(
        default=None, description="What the UNet predicts (single-file main models only)"
    )
    config_path: str | None = Field(
        default=None,
        description="A diffusers folder whose configs describe the model, instead of those shipped for its base "
        "(single-file models only)",
    )


class UnknownModelError(NodeloomError):
    """No model has that key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"No model has the key '{key}'")
        self.key = key


class DuplicateModelError(NodeloomError):
    """That model is installed already."""
