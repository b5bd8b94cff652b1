"""Helpers shared by the image and board API tests: encoded images and uploads."""

from __future__ import annotations

import io
from typing import Any

import httpx
from PIL import Image

CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def encode(image_format: str = "PNG", size: tuple[int, int] = (64, 48), color: str = "red", **save: Any) -> bytes:
    """An image of one colour, encoded."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=image_format, **save)
    return buffer.getvalue()


def post_upload(
    client: httpx.Client,
    data: bytes,
    content_type: str = "image/png",
    filename: str = "image.png",
    **params: Any,
) -> httpx.Response:
    return client.post("/images/upload", files={"file": (filename, data, content_type)}, params=params)


def upload(client: httpx.Client, data: bytes | None = None, **params: Any) -> dict[str, Any]:
    """Uploads `data` (a small PNG by default) and returns the new image's DTO."""
    response = post_upload(client, encode() if data is None else data, **params)
    assert response.status_code == 201, response.text
    dto: dict[str, Any] = response.json()
    return dto
