"""Image names made of a random UUID."""

from __future__ import annotations

import uuid

from nodeloom.app.services.names.names_base import NameServiceBase
from nodeloom.app.services.names.names_common import IMAGE_EXTENSION


class SimpleNameService(NameServiceBase):
    """`{uuid4}.png`: unique without coordination, so several workers may create images at once."""

    def create_image_name(self) -> str:
        return f"{uuid.uuid4()}{IMAGE_EXTENSION}"
