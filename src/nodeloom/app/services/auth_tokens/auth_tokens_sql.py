"""API tokens on the database port; the `auth_tokens` table is made by migration 6 (`shared/database/migrations`)."""

from __future__ import annotations

from nodeloom.app.services.auth_tokens.auth_tokens_base import AuthTokenStoreBase
from nodeloom.app.services.auth_tokens.auth_tokens_common import (
    AuthToken,
    AuthTokenNotFoundError,
    CreatedAuthToken,
    DuplicateAuthTokenNameError,
    hash_token,
    new_token,
    new_token_id,
    validate_token_name,
)
from nodeloom.app.services.shared.database.database_base import DatabaseBase
from nodeloom.app.services.shared.timestamps import utc_now

_COLUMNS = "token_id, name, created_at"
# ON CONFLICT (name) DO NOTHING instead of catching the unique violation, which would doom the transaction.
_INSERT = (
    "INSERT INTO auth_tokens (token_id, name, token_hash, created_at) VALUES (?, ?, ?, ?) "
    f"ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}"
)
_SELECT_ALL = f"SELECT {_COLUMNS} FROM auth_tokens ORDER BY created_at, token_id"
# An id wins over a name, so a token named like another token's id cannot shadow it.
_DELETE = (
    "DELETE FROM auth_tokens WHERE token_id = (SELECT token_id FROM auth_tokens WHERE token_id = ? OR name = ? "
    f"ORDER BY token_id = ? DESC LIMIT 1) RETURNING {_COLUMNS}"
)
_SELECT_HASHES = "SELECT token_hash FROM auth_tokens"


class SqlAuthTokenStore(AuthTokenStoreBase):
    """Tokens in the `auth_tokens` table, on any engine the database port speaks."""

    def __init__(self, db: DatabaseBase) -> None:
        self._db = db

    def create(self, name: str) -> CreatedAuthToken:
        token = new_token()
        with self._db.transaction() as cursor:
            cursor.execute(_INSERT, (new_token_id(), validate_token_name(name), hash_token(token), utc_now()))
            row = cursor.fetchone()
        if row is None:
            raise DuplicateAuthTokenNameError(name)
        return CreatedAuthToken(**dict(row), token=token)

    def list(self) -> list[AuthToken]:
        with self._db.read() as cursor:
            cursor.execute(_SELECT_ALL)
            return [AuthToken.model_validate(dict(row)) for row in cursor.fetchall()]

    def revoke(self, id_or_name: str) -> AuthToken:
        with self._db.transaction() as cursor:
            cursor.execute(_DELETE, (id_or_name, id_or_name, id_or_name))
            row = cursor.fetchone()
        if row is None:
            raise AuthTokenNotFoundError(id_or_name)
        return AuthToken.model_validate(dict(row))

    def token_hashes(self) -> frozenset[str]:
        with self._db.read() as cursor:
            cursor.execute(_SELECT_HASHES)
            return frozenset(str(row["token_hash"]) for row in cursor.fetchall())
