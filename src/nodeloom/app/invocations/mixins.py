"""Inputs that nodes saving images share: the metadata to embed and the board to save to.

A node mixes them in after `BaseInvocation`, as in InvokeAI: `class X(BaseInvocation, WithMetadata, WithBoard)`.
`context.images.save` reads them, so the node itself never passes them on.
"""

from __future__ import annotations

from pydantic import BaseModel

from nodeloom.app.invocations.fields import BoardField, Input, InputField
from nodeloom.app.services.images.images_common import MetadataField


class WithMetadata(BaseModel):
    """Adds a `metadata` input, embedded in the images the node saves."""

    metadata: MetadataField | None = InputField(
        default=None, input=Input.Connection, description="Optional metadata to be saved with the image"
    )


class WithBoard(BaseModel):
    """Adds a `board` input: the board the node's images are put on."""

    board: BoardField | None = InputField(
        default=None, input=Input.Direct, description="The board to save the image to"
    )
