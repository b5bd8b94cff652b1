"""API tokens: what is kept of one (never the token itself), how a token is made and hashed, and the errors."""

from __future__ import annotations

import hashlib
import secrets

from pydantic import BaseModel, Field

from nodeloom.errors import NodeloomError

TOKEN_PREFIX = "nlt_"
"""Starts every token made here, so that secret scanners and people can tell one apart from other strings."""

TOKEN_NAME_MAX_LENGTH = 100


class AuthToken(BaseModel):
    """A token's record: its id, name and age, and the hash that a presented token is checked against."""

    token_id: str = Field(description="The token's id, made when it was created")
    name: str = Field(description="The name it was created with, unique among the tokens")
    created_at: str = Field(description="When it was created (ISO 8601, UTC)")


class CreatedAuthToken(AuthToken):
    """A token just made: the one time the token itself is known."""

    token: str = Field(description="The token, to be sent as `Authorization: Bearer <token>`")


class AuthTokenNotFoundError(NodeloomError):
    """No token has that id or name."""

    def __init__(self, id_or_name: str) -> None:
        super().__init__(f"No token has the id or name '{id_or_name}'")
        self.id_or_name = id_or_name


class DuplicateAuthTokenNameError(NodeloomError):
    """A token has that name already."""

    def __init__(self, name: str) -> None:
        super().__init__(f"A token is named '{name}' already: revoke it first, or choose another name")
        self.name = name


class InvalidAuthTokenNameError(NodeloomError):
    """A token's name must hold a visible character and at most 100 characters."""


def validate_token_name(name: str) -> str:
    """`name` if a token may carry it; raises `InvalidAuthTokenNameError` otherwise."""
    if not name.strip() or len(name) > TOKEN_NAME_MAX_LENGTH:
        raise InvalidAuthTokenNameError(
            f"Token name {name[:40]!r} must hold a visible character and at most {TOKEN_NAME_MAX_LENGTH} characters"
        )
    return name


def new_token() -> str:
    """A fresh token: 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_token_id() -> str:
    return secrets.token_hex(6)


def hash_token(token: str) -> str:
    """The hex SHA-256 of `token`: what is stored and compared, so that a copy of the database holds no token.

    A plain hash suffices (no salt or slow hash): tokens are 256 random bits, not passwords to guess.
    """
    # surrogatepass: a token decoded from JSON may hold a lone surrogate, which is then a wrong token, not an error.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
