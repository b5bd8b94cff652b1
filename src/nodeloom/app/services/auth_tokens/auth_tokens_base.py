"""Stores the API tokens made with `nodeloom tokens create`, by their hash."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.app.services.auth_tokens.auth_tokens_common import AuthToken, CreatedAuthToken


class AuthTokenStoreBase(ABC):
    """The tokens a server accepts besides those in its settings; only their hashes are kept."""

    @abstractmethod
    def create(self, name: str) -> CreatedAuthToken:
        """Makes and stores a new token named `name`; the answer is the only place the token itself appears."""

    @abstractmethod
    def list(self) -> list[AuthToken]:
        """Every token's record, oldest first."""

    @abstractmethod
    def revoke(self, id_or_name: str) -> AuthToken:
        """Removes the token with that id, else with that name, and returns its record."""

    @abstractmethod
    def token_hashes(self) -> frozenset[str]:
        """The hash of every stored token."""
