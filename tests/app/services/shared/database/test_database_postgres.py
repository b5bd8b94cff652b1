"""What the PostgreSQL adapter adds to the port's promises: its placeholders, errors, snapshots and connections."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from tests.database_engines import empty_postgres_schema

from nodeloom.app.services.shared.database.database_common import DatabaseError, DatabaseIntegrityError
from nodeloom.app.services.shared.database.database_postgres import PostgresDatabase, to_psycopg


@pytest.fixture
def db(postgres_url: str) -> Iterator[PostgresDatabase]:
    empty_postgres_schema(postgres_url)
    db = PostgresDatabase(postgres_url)
    with db.transaction() as cursor:
        cursor.execute("CREATE TABLE boards (board_id TEXT PRIMARY KEY, name TEXT NOT NULL)")
        cursor.execute("CREATE TABLE images (image_name TEXT PRIMARY KEY, board_id TEXT REFERENCES boards (board_id))")
    yield db
    db.close()


def names(db: PostgresDatabase) -> list[str]:
    with db.read() as cursor:
        cursor.execute("SELECT name FROM boards ORDER BY name")
        return [row["name"] for row in cursor.fetchall()]


@pytest.mark.parametrize(
    ("sql", "written"),
    [
        ("SELECT a FROM t WHERE a = ? AND b = ?", "SELECT a FROM t WHERE a = %s AND b = %s"),
        ("UPDATE t SET a = :a WHERE b = :b_2", "UPDATE t SET a = %(a)s WHERE b = %(b_2)s"),
        ("SELECT :a::text AS a", "SELECT %(a)s::text AS a"),
        ("SELECT 100 % 7 AS r", "SELECT 100 %% 7 AS r"),
    ],
)
def test_placeholders_are_written_as_psycopg_takes_them(sql: str, written: str) -> None:
    assert to_psycopg(sql) == written


def test_both_kinds_of_placeholder_bind_and_rows_are_read_by_name(db: PostgresDatabase) -> None:
    with db.transaction() as cursor:
        cursor.executemany("INSERT INTO boards (board_id, name) VALUES (?, ?)", [("b1", "one"), ("b2", "two")])
        assert cursor.rowcount == 2
        cursor.execute("SELECT board_id, name FROM boards WHERE name = :name", {"name": "two"})
        row = cursor.fetchone()
        assert row is not None and row["board_id"] == "b2" and dict(row) == {"board_id": "b2", "name": "two"}
        cursor.execute("SELECT COUNT(*) AS total, 10 % ? AS rest FROM boards", (3,))
        assert cursor.fetchall() == [{"total": 2, "rest": 1}]


def test_driver_errors_are_database_errors_and_doom_the_transaction(db: PostgresDatabase) -> None:
    with pytest.raises(DatabaseIntegrityError, match="foreign key") as raised, db.transaction() as cursor:
        cursor.execute("INSERT INTO images (image_name, board_id) VALUES (?, ?)", ("i1", "nowhere"))
    assert isinstance(raised.value.__cause__, psycopg.errors.ForeignKeyViolation)
    with pytest.raises(DatabaseError, match="rolled back"), db.transaction() as cursor:
        cursor.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
        with pytest.raises(DatabaseError, match="missing"):
            cursor.execute("SELECT * FROM missing")
    assert names(db) == []


def test_nested_blocks_join_the_outermost_and_a_failed_one_dooms_it(db: PostgresDatabase) -> None:
    with db.transaction() as outer:
        outer.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
        with pytest.raises(LookupError), db.read() as reader:
            reader.execute("SELECT name FROM boards WHERE board_id = ?", ("b1",))
            assert reader.fetchall() == [{"name": "one"}]  # the outer block's own uncommitted row
            raise LookupError("a read's not found leaves the transaction usable")
    with pytest.raises(DatabaseError, match="rolled back"), db.transaction() as outer:
        outer.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b2", "two"))
        with pytest.raises(LookupError), db.transaction():
            raise LookupError
    with pytest.raises(DatabaseError, match="inside read"), db.read(), db.transaction():
        pass
    assert names(db) == ["one"]


def test_a_read_is_read_only_and_sees_one_snapshot(db: PostgresDatabase) -> None:
    with pytest.raises(DatabaseError, match="read-only"), db.read() as cursor:
        cursor.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
    with db.read() as cursor:
        cursor.execute("SELECT COUNT(*) AS n FROM boards")
        # Another thread's commit, between this read's two queries, is not in its snapshot.
        writer = threading.Thread(target=lambda: add_board(db, "b2"))
        writer.start()
        writer.join()
        cursor.execute("SELECT COUNT(*) AS n FROM boards")
        assert cursor.fetchall() == [{"n": 0}]
    assert names(db) == ["b2"]


def add_board(db: PostgresDatabase, name: str) -> None:
    with db.transaction() as cursor:
        cursor.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", (name, name))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://postgres@127.0.0.1:1/x", "Cannot connect to PostgreSQL at 127.0.0.1:1/x: connection failed"),
        ("postgresql://a b", "The database URL is not a valid PostgreSQL URL"),
    ],
)
def test_a_server_that_cannot_be_reached_is_one_database_error(url: str, says: str) -> None:
    with pytest.raises(DatabaseError, match="^" + says.replace(".", r"\.")):
        PostgresDatabase(url)
