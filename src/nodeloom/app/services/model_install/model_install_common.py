"""What installing models reports, and the errors of a path that cannot be installed."""

from __future__ import annotations

from pydantic import BaseModel, Field

from nodeloom.backend.model_manager.configs import AnyModelConfig
from nodeloom.backend.model_manager.errors import InvalidModelError
from nodeloom.errors import NodeloomError


class SkippedModel(BaseModel):
    """A path a folder scan did not install, and why."""

    path: str = Field(description="The model's path")
    reason: str = Field(description="Why it was not installed")


class ScanFolderResult(BaseModel):
    """What a folder scan installed and what it skipped."""

    installed: list[AnyModelConfig] = Field(description="The models installed, in path order")
    skipped: list[SkippedModel] = Field(description="The models found but not installed, in path order")


class ModelBaseUnknownError(InvalidModelError):
    """The model's base could not be determined: install it again with a base override."""


class ModelSettingUnknownError(InvalidModelError):
    """A setting the model needs could not be told from its files: install it again with an override of it."""


# Raised with no message but this one: naming the path, or saying whether it exists or where it leads, would tell
# a client about the server's files.
class ModelPathNotAllowedError(NodeloomError):
    """Models are installed only from the models folder and the folders in the model_install_roots setting."""


class RelativeModelPathError(NodeloomError):
    """The server was sent a relative path: it needs an absolute one, as it does not share the client's folder."""


class ScanTooLargeError(NodeloomError):
    """The folder holds too many files to scan: scan a narrower folder."""
