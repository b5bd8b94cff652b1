"""Replay across API servers on one database, on both engines: a client that reconnects with `after` to another
server, or to a restarted one, gets from the events table what the server's memory lacks, then the live events,
with no gap and no duplicate; a number older than the table keeps is answered with `events_missed`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from tests.app.api.queue_api_helpers import ADD_GRAPH, enqueue, wait
from tests.app.api.socket_listeners import Listeners
from tests.conftest import LiveServer
from tests.helpers import wait_for

from nodeloom.app.api import sockets

Q = "default"
Events = list[tuple[str, dict[str, Any]]]


@contextmanager
def queue_client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1/queue/{Q}", timeout=30) as client:
        yield client


def run_batch(server: LiveServer, runs: int) -> int:
    """Runs `runs` sessions through `server`'s queue; the number of the queue's last stored event once they are done
    (each status change is stored with its events, and a node's events before it)."""
    with queue_client(server) as client:
        result = enqueue(client, ADD_GRAPH, runs=runs)
        assert wait(client, result["batch"]["batch_id"], timeout=60)["finished"]
    return last_stored(server)


def last_stored(server: LiveServer) -> int:
    return server.services.events.stored_queue_events(Q, 0, 0).last


def seqs(events: Events) -> list[int]:
    return [data["seq"] for _, data in events]


def received_up_to(events: Events, last: int) -> Callable[[], bool]:
    return lambda: bool(events) and events[-1][1].get("seq") == last


def test_a_client_reconnecting_to_another_server_gets_what_it_missed_then_the_live_events(
    live_server: Callable[..., LiveServer], shared_database: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small pages: the replay takes many reads of the table, while the live events go on.
    monkeypatch.setattr(sockets, "REPLAY_PAGE", 4)
    a = live_server(**shared_database)
    witness = Listeners(a.url)
    first = Listeners(a.url)
    try:
        seen_last = run_batch(a, runs=3)
        wait_for(received_up_to(first.events[0], seen_last), what="the first client to get the first batch")
    finally:
        first.close()
    missed_last = run_batch(a, runs=5)
    # B starts after the events it is asked for: its memory has none of them, the table has them all.
    b = live_server(run_processor=False, **shared_database)
    with queue_client(a) as client:
        live_batch = enqueue(client, ADD_GRAPH, runs=40)
        back = Listeners(b.url, subscription={"queue_id": Q, "after": seen_last})
        try:
            assert wait(client, live_batch["batch"]["batch_id"], timeout=60)["finished"]
            final = last_stored(a)
            wait_for(received_up_to(back.events[0], final), what="the reconnected client to get the live batch")
            wait_for(received_up_to(witness.events[0], final), what="the witness to get the live batch")
        finally:
            back.close()
            witness.close()
    got = back.events[0]
    expected = [(name, data) for name, data in witness.events[0] if data["seq"] > seen_last]
    assert seqs(got) == list(range(seen_last + 1, final + 1))
    assert got == expected
    assert seen_last < missed_last < back.acks[0]["last_seq"] <= final


def test_events_read_from_the_table_before_the_server_sends_them_are_not_sent_again(
    live_server: Callable[..., LiveServer], shared_database: dict[str, Any]
) -> None:
    a = live_server(**shared_database)
    b = live_server(run_processor=False, **shared_database)
    # B's tail stops, as one that lags does: the table gets ahead of what B has sent its room.
    b.services.events.stop()
    ahead = run_batch(a, runs=2)
    client = Listeners(b.url, subscription={"queue_id": Q, "after": 0})
    try:
        wait_for(received_up_to(client.events[0], ahead), what="the replay")
        assert client.acks[0]["last_seq"] == ahead
        # B's tail goes on: it sends its room the same events, then the next ones.
        b.services.events.start()
        final = run_batch(a, runs=1)
        wait_for(received_up_to(client.events[0], final), what="the live events")
    finally:
        client.close()
    assert seqs(client.events[0]) == list(range(1, final + 1))


def test_a_restarted_server_replays_from_the_table(
    live_server: Callable[..., LiveServer], shared_database: dict[str, Any]
) -> None:
    before = live_server(**shared_database)
    first = Listeners(before.url)
    try:
        seen_last = run_batch(before, runs=2)
        wait_for(received_up_to(first.events[0], seen_last), what="the client to get the first batch")
    finally:
        first.close()
    missed_last = run_batch(before, runs=3)
    before.stop()

    after = live_server(**shared_database)
    back = Listeners(after.url, subscription={"queue_id": Q, "after": seen_last})
    try:
        wait_for(received_up_to(back.events[0], missed_last), what="the replay")
        assert back.acks[0]["last_seq"] == missed_last
        stored = after.services.events.stored_queue_events(Q, seen_last, 1000).events
        final = run_batch(after, runs=1)
        wait_for(received_up_to(back.events[0], final), what="the live events")
    finally:
        back.close()
    got = back.events[0]
    assert [(name, data) for name, data in got[: len(stored)]] == [
        (event.event_name, json.loads(event.payload)) for event in stored
    ]
    assert seqs(got) == list(range(seen_last + 1, final + 1))


def test_a_number_older_than_the_table_keeps_is_answered_with_events_missed(
    live_server: Callable[..., LiveServer], shared_database: dict[str, Any]
) -> None:
    writer = live_server(**shared_database)
    last = run_batch(writer, runs=2)
    kept_from = last - 2
    # What pruning does to the oldest events; a server started since has none of them in its memory.
    with writer.services.database.transaction() as cursor:
        cursor.execute("DELETE FROM events WHERE queue_id = ? AND seq < ?", (Q, kept_from))
    server = live_server(run_processor=False, **shared_database)

    too_old = Listeners(server.url, subscription={"queue_id": Q, "after": kept_from - 2})
    just_kept = Listeners(server.url, subscription={"queue_id": Q, "after": kept_from - 1})
    try:
        missed = wait_for(lambda: too_old.events[0], what="events_missed")
        wait_for(received_up_to(just_kept.events[0], last), what="the replay of the events kept")
        final = run_batch(writer, runs=1)
        wait_for(received_up_to(too_old.events[0], final), what="the live events after events_missed")
    finally:
        too_old.close()
        just_kept.close()
    assert missed[0] == ("events_missed", {"queue_id": Q, "after": kept_from - 2, "oldest": kept_from, "last": last})
    assert too_old.acks[0]["last_seq"] == last
    assert seqs(too_old.events[0][1:]) == list(range(last + 1, final + 1))
    assert seqs(just_kept.events[0]) == list(range(kept_from, final + 1))


def test_a_replay_the_table_cannot_serve_is_answered_with_events_missed_then_live_events(
    live_server: Callable[..., LiveServer], shared_database: dict[str, Any]
) -> None:
    writer = live_server(**shared_database)
    last = run_batch(writer, runs=1)
    server = live_server(run_processor=False, **shared_database)
    with writer.services.database.transaction() as cursor:
        cursor.execute("ALTER TABLE events RENAME TO events_away")
    try:
        client = Listeners(server.url, subscription={"queue_id": Q, "after": 1})
    finally:
        with writer.services.database.transaction() as cursor:
            cursor.execute("ALTER TABLE events_away RENAME TO events")
    try:
        final = run_batch(writer, runs=1)
        wait_for(received_up_to(client.events[0], final), what="the live events")
    finally:
        client.close()
    got = client.events[0]
    assert got[0] == ("events_missed", {"queue_id": Q, "after": 1, "oldest": 1, "last": 0})
    assert client.acks[0]["last_seq"] == 1
    assert seqs(got[1:]) == list(range(last + 1, final + 1))
