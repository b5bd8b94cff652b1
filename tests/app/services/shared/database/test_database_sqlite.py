from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType

import pytest

from nodeloom.app.services.shared.database.database_base import DbCursor
from nodeloom.app.services.shared.database.database_common import DatabaseError, DatabaseIntegrityError
from nodeloom.app.services.shared.database.database_sqlite import SqliteDatabase


class Boom(Exception):
    pass


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "nodeloom.db"


@pytest.fixture
def db(path: Path) -> Iterator[SqliteDatabase]:
    db = SqliteDatabase(path)
    with db.transaction() as cursor:
        cursor.execute("CREATE TABLE boards (board_id TEXT PRIMARY KEY, name TEXT NOT NULL)")
        cursor.execute(
            "CREATE TABLE images (image_name TEXT PRIMARY KEY,"
            " board_id TEXT REFERENCES boards (board_id), status TEXT NOT NULL DEFAULT 'new')"
        )
    yield db
    db.close()


def names(db: SqliteDatabase) -> list[str]:
    with db.read() as cursor:
        cursor.execute("SELECT name FROM boards ORDER BY name")
        return [row["name"] for row in cursor.fetchall()]


def test_the_connection_uses_wal_foreign_keys_and_a_busy_timeout(db: SqliteDatabase) -> None:
    with db.read() as cursor:
        settings = {}
        for pragma in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout"):
            cursor.execute(f"PRAGMA {pragma}")
            row = cursor.fetchone()
            assert row is not None
            (settings[pragma],) = dict(row).values()
    assert settings == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 1, "busy_timeout": 5000}
    assert db.dialect == "sqlite"


def test_a_committed_transaction_is_in_the_file(db: SqliteDatabase, path: Path) -> None:
    with db.transaction() as cursor:
        cursor.executemany("INSERT INTO boards (board_id, name) VALUES (?, ?)", [("b1", "one"), ("b2", "two")])
        assert cursor.rowcount == 2
    db.close()

    reopened = SqliteDatabase(path)
    try:
        assert names(reopened) == ["one", "two"]
    finally:
        reopened.close()


def test_rows_are_read_by_column_name(db: SqliteDatabase) -> None:
    with db.transaction() as cursor:
        cursor.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
        cursor.execute("INSERT INTO images (image_name, board_id) VALUES (?, ?)", ("i1", "b1"))
        cursor.execute("SELECT image_name, status FROM images")
        row = cursor.fetchone()
        assert row is not None
        assert row["status"] == "new"
        assert dict(row) == {"image_name": "i1", "status": "new"}
        assert cursor.fetchone() is None


def test_named_placeholders_bind_a_mapping_by_name(db: SqliteDatabase) -> None:
    with db.transaction() as cursor:
        cursor.execute(
            "INSERT INTO boards (board_id, name) VALUES (:board_id, :name)", {"name": "one", "board_id": "b1"}
        )
        # Any mapping, not only a dict, as the port promises; a key the statement does not name is ignored.
        cursor.executemany(
            "INSERT INTO images (image_name, board_id) VALUES (:image_name, :board_id)",
            [
                MappingProxyType({"image_name": "i1", "board_id": "b1", "unused": 1}),
                {"image_name": "i2", "board_id": "b1"},
            ],
        )
        cursor.execute("SELECT image_name FROM images WHERE board_id = :board_id", MappingProxyType({"board_id": "b1"}))
        assert [row["image_name"] for row in cursor.fetchall()] == ["i1", "i2"]
    with pytest.raises(DatabaseError), db.transaction() as cursor:
        cursor.execute("INSERT INTO boards (board_id, name) VALUES (:board_id, :name)", {"board_id": "b2"})
    assert names(db) == ["one"]


def test_returning_is_supported() -> None:
    # Services get generated keys with RETURNING on both engines; SQLite has it since 3.35.
    assert sqlite3.sqlite_version_info >= (3, 35, 0)
    db = SqliteDatabase(":memory:")
    try:
        with db.transaction() as cursor:
            cursor.execute("CREATE TABLE items (item_id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
            cursor.execute("INSERT INTO items (name) VALUES (?) RETURNING item_id", ("a",))
            row = cursor.fetchone()
            assert row is not None
            assert row["item_id"] == 1
    finally:
        db.close()


def test_an_exception_in_the_block_rolls_back_and_propagates_unchanged(db: SqliteDatabase) -> None:
    boom = Boom("the caller's own error")
    with pytest.raises(Boom) as raised, db.transaction() as cursor:
        cursor.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
        raise boom
    assert raised.value is boom
    assert names(db) == []


def test_a_driver_error_becomes_a_database_error_and_rolls_back(db: SqliteDatabase) -> None:
    with pytest.raises(DatabaseError, match="no such table: missing") as raised, db.transaction() as cursor:
        cursor.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
        cursor.execute("SELECT * FROM missing")
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert names(db) == []


def test_a_foreign_key_violation_is_an_integrity_error(db: SqliteDatabase) -> None:
    with pytest.raises(DatabaseIntegrityError, match="FOREIGN KEY") as raised, db.transaction() as cursor:
        cursor.execute("INSERT INTO images (image_name, board_id) VALUES (?, ?)", ("i1", "nowhere"))
    assert isinstance(raised.value.__cause__, sqlite3.IntegrityError)


def test_a_swallowed_driver_error_still_rolls_the_transaction_back(db: SqliteDatabase) -> None:
    with pytest.raises(DatabaseError, match="rolled back"), db.transaction() as cursor:
        cursor.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
        with pytest.raises(DatabaseIntegrityError):
            cursor.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "again"))
    assert names(db) == []


def test_a_nested_transaction_joins_the_outer_one(db: SqliteDatabase) -> None:
    with db.transaction() as outer:
        outer.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
        with db.transaction() as inner:
            inner.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b2", "two"))
        with db.read() as reader:
            reader.execute("SELECT COUNT(*) AS total FROM boards")
            row = reader.fetchone()
            assert row is not None
            assert row["total"] == 2
        outer.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b3", "three"))
    assert names(db) == ["one", "three", "two"]


def test_a_failed_nested_transaction_rolls_back_the_outer_one(db: SqliteDatabase) -> None:
    with db.transaction() as outer:
        outer.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
    with pytest.raises(Boom), db.transaction() as outer:
        outer.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b2", "two"))
        with db.transaction() as inner:
            inner.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b3", "three"))
            raise Boom
    assert names(db) == ["one"]


def test_an_outer_block_cannot_commit_a_failed_nested_one(db: SqliteDatabase) -> None:
    with pytest.raises(DatabaseError, match="rolled back"), db.transaction() as outer:
        outer.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
        with pytest.raises(Boom), db.transaction() as inner:
            inner.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b2", "two"))
            raise Boom
    assert names(db) == []


def test_a_failed_nested_read_leaves_the_outer_transaction_usable(db: SqliteDatabase) -> None:
    with db.transaction() as outer:
        outer.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
        with pytest.raises(Boom), db.read() as reader:
            reader.execute("SELECT name FROM boards WHERE board_id = ?", ("b2",))
            if reader.fetchone() is None:
                raise Boom("not found")
        outer.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b2", "two"))
    assert names(db) == ["one", "two"]


def test_a_nested_read_refuses_writes(db: SqliteDatabase) -> None:
    with pytest.raises(DatabaseError, match="rolled back"), db.transaction() as outer:
        outer.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
        with pytest.raises(DatabaseError, match="readonly"), db.read() as reader:
            reader.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b2", "two"))
    assert names(db) == []


def test_read_refuses_writes_and_nested_transactions(db: SqliteDatabase) -> None:
    with pytest.raises(DatabaseError, match="readonly"), db.read() as cursor:
        cursor.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
    with pytest.raises(DatabaseError, match="inside read"), db.read(), db.transaction():
        pass
    # A refused read leaves the connection writable.
    with db.transaction() as cursor:
        cursor.execute("INSERT INTO boards (board_id, name) VALUES (?, ?)", ("b1", "one"))
    assert names(db) == ["one"]


def test_a_file_that_cannot_be_opened_is_a_database_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="unable to open"):
        SqliteDatabase(tmp_path / "missing-folder" / "nodeloom.db")


def test_a_closed_database_refuses_work(path: Path) -> None:
    db = SqliteDatabase(path)
    db.close()
    db.close()
    with pytest.raises(DatabaseError, match="closed"), db.transaction():
        pass


def claim_all(db: SqliteDatabase, worker: int, barrier: threading.Barrier) -> list[int]:
    claimed: list[int] = []
    barrier.wait()
    while True:
        with db.transaction() as cursor:
            item_id = smallest_unclaimed(cursor)
            if item_id is None:
                return claimed
            cursor.execute("UPDATE items SET claimed_by = ? WHERE item_id = ?", (worker, item_id))
            assert cursor.rowcount == 1
        claimed.append(item_id)


def smallest_unclaimed(cursor: DbCursor) -> int | None:
    cursor.execute("SELECT MIN(item_id) AS item_id FROM items WHERE claimed_by IS NULL")
    row = cursor.fetchone()
    assert row is not None
    item_id: int | None = row["item_id"]
    return item_id


@pytest.mark.parametrize("connections", [1, 2], ids=["one-connection", "two-connections"])
def test_concurrent_claims_never_take_a_row_twice(path: Path, connections: int) -> None:
    # Two connections on one file stand for two processes: there BEGIN IMMEDIATE, not the lock,
    # keeps select-then-update atomic.
    workers, rows = 8, 200
    databases = [SqliteDatabase(path) for _ in range(connections)]
    try:
        with databases[0].transaction() as cursor:
            cursor.execute("CREATE TABLE items (item_id INTEGER PRIMARY KEY, claimed_by INTEGER)")
            cursor.executemany("INSERT INTO items (item_id) VALUES (?)", [(i,) for i in range(rows)])
        barrier = threading.Barrier(workers)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(claim_all, databases[worker % connections], worker, barrier) for worker in range(workers)
            ]
            claims = {worker: future.result(timeout=60) for worker, future in enumerate(futures)}

        everything = [item_id for claimed in claims.values() for item_id in claimed]
        assert sorted(everything) == list(range(rows))
        with databases[0].read() as cursor:
            cursor.execute("SELECT item_id, claimed_by FROM items")
            recorded = {row["item_id"]: row["claimed_by"] for row in cursor.fetchall()}
        assert recorded == {item_id: worker for worker, claimed in claims.items() for item_id in claimed}
    finally:
        for db in databases:
            db.close()
