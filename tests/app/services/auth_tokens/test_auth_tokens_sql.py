"""The API token store on a real SQLite file: tokens made once, kept as hashes, listed and revoked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from tests.database_engines import OpenDatabase

from nodeloom.app.services.auth_tokens.auth_tokens_common import (
    AuthTokenNotFoundError,
    DuplicateAuthTokenNameError,
    InvalidAuthTokenNameError,
)
from nodeloom.app.services.auth_tokens.auth_tokens_sql import SqlAuthTokenStore
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator


@pytest.fixture
def tokens(open_db: OpenDatabase) -> Iterator[SqlAuthTokenStore]:
    db = open_db()
    Migrator(db, MIGRATIONS).run()
    yield SqlAuthTokenStore(db)
    db.close()


def test_a_token_is_made_once_and_kept_as_its_hash(tokens: SqlAuthTokenStore) -> None:
    created = tokens.create("ci")
    again = tokens.create("laptop")
    assert created.token.startswith("nlt_") and len(created.token) > 40 and created.token != again.token
    assert tokens.token_hashes() == {
        hashlib.sha256(created.token.encode()).hexdigest(),
        hashlib.sha256(again.token.encode()).hexdigest(),
    }
    listed = tokens.list()
    assert [(token.token_id, token.name) for token in listed] == [(created.token_id, "ci"), (again.token_id, "laptop")]
    assert all(created.token not in token.model_dump_json() for token in listed)


def test_names_are_unique_and_visible(tokens: SqlAuthTokenStore) -> None:
    tokens.create("ci")
    with pytest.raises(DuplicateAuthTokenNameError, match="A token is named 'ci' already"):
        tokens.create("ci")
    for name in ("", "   ", "x" * 101):
        with pytest.raises(InvalidAuthTokenNameError, match="must hold a visible character and at most 100"):
            tokens.create(name)
    assert [token.name for token in tokens.list()] == ["ci"]


def test_a_token_is_revoked_by_id_or_name_and_an_id_wins(tokens: SqlAuthTokenStore) -> None:
    first = tokens.create("first")
    # A token named like another's id: revoking that id revokes the token it names, not this one.
    impostor = tokens.create(first.token_id)
    assert tokens.revoke(first.token_id).name == "first"
    assert [token.name for token in tokens.list()] == [first.token_id]
    assert tokens.revoke(impostor.token_id).name == first.token_id
    second = tokens.create("second")
    assert tokens.revoke("second").token_id == second.token_id
    assert tokens.list() == [] and tokens.token_hashes() == frozenset()
    with pytest.raises(AuthTokenNotFoundError, match="No token has the id or name 'second'"):
        tokens.revoke("second")
