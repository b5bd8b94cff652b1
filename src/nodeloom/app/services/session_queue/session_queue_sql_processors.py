"""The processors that share a queue: their registrations, renewed by heartbeats (their leases), and which of them
are known to be gone.

A processor is alive while its last heartbeat is within the lease (`lease_s`). The timestamps come from the clocks
of the machines that write and judge them, so those must agree to well within the lease (NTP does).
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nodeloom.app.services.session_queue import session_queue_sql_statements as sql
from nodeloom.app.services.session_queue.session_queue_common import ProcessorInfo, ProcessorItem, ProcessorStatus
from nodeloom.app.services.shared.database.database_base import DbCursor
from nodeloom.app.services.shared.timestamps import to_timestamp

FORGET_AFTER_S = 3600.0
"""How long past its lease a silent processor stays listed (as not alive) before its registration is deleted."""

_PROCESS_STARTED = to_timestamp(datetime.now(UTC))
"""About when this process started (when this module was imported): a registration with this process's id that is
older was made by an earlier process that had the same id, as a restarted container's first process has."""


def this_host() -> str:
    return socket.gethostname()


def heartbeat(cursor: DbCursor, processor: ProcessorInfo, item_id: int | None, node_id: str | None) -> None:
    cursor.execute(
        sql.HEARTBEAT,
        {
            "processor_id": processor.processor_id,
            "host": processor.host,
            "pid": processor.pid,
            "devices": ",".join(processor.devices),
            "started_at": to_timestamp(processor.started_at),
            "heartbeat_at": to_timestamp(datetime.now(UTC)),
            "current_item_id": item_id,
            "current_node_id": node_id,
        },
    )


def lease_cutoff(lease_s: float, now: datetime | None = None) -> str:
    """The oldest heartbeat that still holds a lease."""
    return to_timestamp((now or datetime.now(UTC)) - timedelta(seconds=lease_s))


def forget_gone(cursor: DbCursor, lease_s: float) -> None:
    """Deletes the registrations of processors known to be gone, so that the items they hold are reclaimed at once:
    one on this host whose process has ended or was an earlier process with this one's id, and any silent for
    `FORGET_AFTER_S` past its lease."""
    cursor.execute(sql.SELECT_HOST_PROCESSORS, (this_host(),))
    for row in cursor.fetchall():
        if process_gone(row["pid"], row["started_at"]):
            cursor.execute(sql.DELETE_PROCESSOR, (row["processor_id"],))
    cursor.execute(sql.DELETE_SILENT_PROCESSORS, (lease_cutoff(lease_s + FORGET_AFTER_S),))


def process_gone(pid: int, started_at: str) -> bool:
    if pid == os.getpid():
        return started_at < _PROCESS_STARTED
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a process of another user: alive
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether `pid` has exited and waits to be reaped (Linux; elsewhere, never known): a worker process whose server
    died is left so under an init that reaps slowly."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the command's name, which is in parentheses and may hold any character.
    return stat[stat.rindex(")") + 2 :].startswith("Z")


def list_processors(cursor: DbCursor, lease_s: float) -> list[ProcessorStatus]:
    cursor.execute(sql.SELECT_HELD_ITEMS)
    held: dict[str, list[ProcessorItem]] = {}
    for row in cursor.fetchall():
        held.setdefault(row["processor_id"], []).append(
            ProcessorItem(
                item_id=row["item_id"], queue_id=row["queue_id"], batch_id=row["batch_id"], session_id=row["session_id"]
            )
        )
    cursor.execute(sql.SELECT_PROCESSORS)
    now = datetime.now(UTC)
    processors: list[ProcessorStatus] = []
    for row in cursor.fetchall():
        items = held.get(row["processor_id"], [])
        for item in items:
            if item.item_id == row["current_item_id"]:
                item.node_id = row["current_node_id"]
        heartbeat_at = datetime.fromisoformat(row["heartbeat_at"])
        silent_s = max(0.0, (now - heartbeat_at).total_seconds())
        processors.append(
            ProcessorStatus(
                processor_id=row["processor_id"],
                host=row["host"],
                pid=row["pid"],
                devices=row["devices"].split(",") if row["devices"] else [],
                started_at=datetime.fromisoformat(row["started_at"]),
                heartbeat_at=heartbeat_at,
                seconds_since_heartbeat=silent_s,
                is_alive=silent_s <= lease_s,
                items=items,
            )
        )
    return processors
