"""The engines the record suites run on: a SQLite file, and a scratch database on the local PostgreSQL server.

The server is `$NODELOOM_TEST_POSTGRES_URL` (default: the project machines' trust-authenticated server on
127.0.0.1:5432). Without it the PostgreSQL cases are skipped, saying why, except under `CI=true`, where a missing
server fails them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from nodeloom.app.services.shared.database.database_base import DatabaseBase

OpenDatabase = Callable[[], DatabaseBase]
"""Opens the test's database, empty at the test's start, as a freshly started process would; the caller closes it."""

sqlite_only = pytest.mark.parametrize("open_db", ["sqlite"], indirect=True)
"""For a test of what only SQLite has, such as its query plans."""
postgres_only = pytest.mark.parametrize("open_db", ["postgres"], indirect=True)
"""For a test of what only PostgreSQL has, such as concurrent write transactions."""

SERVER_URL = os.environ.get("NODELOOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _require_server() -> None:
    try:
        psycopg.connect(SERVER_URL, connect_timeout=3).close()
    except psycopg.Error as error:
        reason = f"PostgreSQL does not answer at {SERVER_URL}: {str(error).strip().splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true needs the server: start it, as .ci/run does)", pytrace=False)
        pytest.skip(reason)


@contextmanager
def scratch_postgres_database() -> Iterator[str]:
    """The URL of a new, empty database on the server, dropped after with any connection left to it."""
    _require_server()
    dbname = f"nodeloom_test_{secrets.token_hex(6)}"
    name = sql.Identifier(dbname)
    with psycopg.connect(SERVER_URL, autocommit=True) as server:
        server.execute(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        yield urlsplit(SERVER_URL)._replace(path=f"/{dbname}").geturl()
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as server:
            server.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(name))


def empty_postgres_schema(url: str) -> None:
    """Drops every table of the database at `url`, so that the next test starts from an empty one."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
