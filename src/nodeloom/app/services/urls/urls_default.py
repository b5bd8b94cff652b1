"""Image URLs on this server's API, in InvokeAI's scheme."""

from __future__ import annotations

from nodeloom.app.services.urls.urls_base import UrlServiceBase


class LocalUrlService(UrlServiceBase):
    """`{base_url}/images/i/{name}/full` and `.../thumbnail`, relative to the server's origin."""

    def __init__(self, base_url: str = "/api/v1") -> None:
        self._base_url = base_url.rstrip("/")

    def get_image_url(self, image_name: str, thumbnail: bool = False) -> str:
        kind = "thumbnail" if thumbnail else "full"
        return f"{self._base_url}/images/i/{image_name}/{kind}"
