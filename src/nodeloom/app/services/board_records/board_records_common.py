"""Board records, the changes they accept, and their errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from nodeloom.errors import NodeloomError

BOARD_NAME_MAX_LENGTH = 300


class BoardRecord(BaseModel):
    """A board's row."""

    board_id: str = Field(description="The unique id of the board")
    board_name: str = Field(description="The name of the board")
    archived: bool = Field(description="Whether the board is archived (hidden from listings unless asked for)")
    created_at: str = Field(description="When the board was created (ISO 8601, UTC)")
    updated_at: str = Field(description="When the board last changed (ISO 8601, UTC)")


class BoardRecordNotFoundError(NodeloomError):
    """No board has that id."""

    def __init__(self, board_id: str) -> None:
        super().__init__(f"Board '{board_id}' not found")
        self.board_id = board_id


class InvalidBoardNameError(NodeloomError, ValueError):
    """A board name must hold a visible character and at most 300 characters."""


def validate_board_name(board_name: str) -> str:
    """`board_name` if a board may carry it; raises `InvalidBoardNameError` otherwise."""
    if not board_name.strip() or len(board_name) > BOARD_NAME_MAX_LENGTH:
        raise InvalidBoardNameError(
            f"Board name {board_name[:40]!r} must hold a visible character and at most "
            f"{BOARD_NAME_MAX_LENGTH} characters"
        )
    return board_name


class BoardChanges(BaseModel):
    """The changes a board accepts; a field left None is left as it is."""

    model_config = ConfigDict(extra="forbid")

    board_name: str | None = Field(default=None, description="The board's new name")
    archived: StrictBool | None = Field(default=None, description="Whether the board is now archived")

    @field_validator("board_name")
    @classmethod
    def check_board_name(cls, board_name: str | None) -> str | None:
        # InvalidBoardNameError is a ValueError, so a request with a bad name fails like any bad field.
        return None if board_name is None else validate_board_name(board_name)
