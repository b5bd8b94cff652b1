"""Where clients fetch an image or its thumbnail."""

from __future__ import annotations

from abc import ABC, abstractmethod


class UrlServiceBase(ABC):
    """Builds the URLs of images served by the API."""

    @abstractmethod
    def get_image_url(self, image_name: str, thumbnail: bool = False) -> str:
        """The URL of the full image, or of its thumbnail."""
