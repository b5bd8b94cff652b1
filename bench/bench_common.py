"""What several benchmarks share: a scratch PostgreSQL database, and the trivial session they time."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

SERVER_URL = os.environ.get("NODELOOM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
"""The PostgreSQL server the benchmarks make their scratch databases on."""

# Three trivial nodes: the processor's own cost per session, with next to no node work.
TRIVIAL_GRAPH: dict[str, Any] = {
    "nodes": {
        "a": {"id": "a", "type": "integer", "value": 1},
        "b": {"id": "b", "type": "integer", "value": 2},
        "sum": {"id": "sum", "type": "add", "use_cache": False},
    },
    "edges": [
        {"source": {"node_id": "a", "field": "value"}, "destination": {"node_id": "sum", "field": "a"}},
        {"source": {"node_id": "b", "field": "value"}, "destination": {"node_id": "sum", "field": "b"}},
    ],
}


@contextmanager
def scratch_database() -> Iterator[str]:
    """The URL of a new database on `SERVER_URL`, dropped after."""
    name = f"nodeloom_bench_{secrets.token_hex(6)}"
    with psycopg.connect(SERVER_URL, autocommit=True) as server:
        server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(SERVER_URL)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as server:
            server.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
