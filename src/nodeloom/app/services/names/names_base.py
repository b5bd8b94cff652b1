"""Makes the names of new images."""

from __future__ import annotations

from abc import ABC, abstractmethod


class NameServiceBase(ABC):
    """Generates unique image names; `names_common.validate_image_name` checks them."""

    @abstractmethod
    def create_image_name(self) -> str:
        """A new, unique image name."""
