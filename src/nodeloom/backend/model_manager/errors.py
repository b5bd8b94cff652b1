"""The errors of probing and loading models."""

from __future__ import annotations

from nodeloom.errors import NodeloomError


class InvalidModelError(NodeloomError):
    """The path holds no model that nodeloom recognises."""


class ModelPathNotFoundError(NodeloomError):
    """Nothing exists at that path."""


class ModelLinkNotAllowedError(NodeloomError):
    """A link inside a model leads outside the folders models are installed from."""


class ModelLoadError(NodeloomError):
    """The model could not be loaded."""


class ModelLoaderNotFoundError(ModelLoadError, NotImplementedError):
    """No loader is registered for this kind of model."""


class DuplicateModelLoaderError(NodeloomError):
    """A loader is registered for this kind of model already."""


class SubmodelTypeError(ModelLoadError):
    """The submodel asked for does not fit the model."""


class ModelFileError(ModelLoadError):
    """The file is not a model file that can be read."""


class UnsafeModelFileError(ModelFileError):
    """The file holds Python objects beyond tensors, and loading them could run code: it is refused."""
