"""Webhook calls to real HTTP endpoints on 127.0.0.1, from the real services (and a real server process)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import ipaddress
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import StartServices
from tests.database_engines import OpenDatabase
from tests.helpers import edge, free_port, graph_json, wait_for

from nodeloom.app.services.events.events_database import DatabaseEventService
from nodeloom.app.services.invocation_services import InvocationServices
from nodeloom.app.services.invoker import Invoker
from nodeloom.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID, Batch, WebhookClaimant
from nodeloom.app.services.session_queue.session_queue_sql import SqlSessionQueue
from nodeloom.app.services.shared.database.database_base import DatabaseBase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator
from nodeloom.app.services.webhooks.webhooks_common import WebhookAddressError, is_public
from nodeloom.app.services.webhooks.webhooks_default import HttpWebhookService, WebhookSettings
from nodeloom.app.services.webhooks.webhooks_default_http import WebhookCaller

ADD_GRAPH = graph_json(
    [{"id": "a", "type": "integer", "value": 1}, {"id": "sum", "type": "add", "b": 100}],
    [edge("a", "value", "sum", "a")],
)


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: datetime


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every call, with its exact body, and answers 200."""

    def __init__(self, port: int = 0) -> None:
        self.calls: list[Call] = []
        calls = self.calls

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                calls.append(Call(self.path, dict(self.headers.items()), body, datetime.now(UTC)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hook"

    def item_ids(self) -> list[int]:
        return sorted(json.loads(call.body)["item_id"] for call in self.calls)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HangingTarget:
    """Accepts connections on 127.0.0.1 and never answers: each call to it hangs until it is cut."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.05)
        self.port: int = self._socket.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.accepted.append(connection)

    @staticmethod
    def read_until_closed(connection: socket.socket) -> bool:
        """Whether the caller closed the connection (within a few seconds), after sending its request."""
        connection.settimeout(5)
        try:
            while connection.recv(65536):
                pass
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self._closing.set()
        self._thread.join()
        for connection in self.accepted:
            connection.close()
        self._socket.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def hanging() -> Iterator[HangingTarget]:
    target = HangingTarget()
    yield target
    target.close()


def enqueue(services: InvocationServices, url: str, runs: int = 1) -> list[int]:
    batch = Batch.model_validate({"graph": ADD_GRAPH, "runs": runs, "callback_url": url})
    return services.session_queue.enqueue_batch(DEFAULT_QUEUE_ID, batch, prepend=False).item_ids


def webhook_states(services: InvocationServices, item_ids: list[int]) -> list[str | None]:
    with services.database.read() as cursor:
        states = []
        for item_id in item_ids:
            cursor.execute("SELECT webhook_state FROM session_queue WHERE item_id = ?", (item_id,))
            row = cursor.fetchone()
            states.append(None if row is None else row["webhook_state"])
    return states


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
        "64:ff9b:1::7f00:1",
        "2002:a00:1::",
        "::127.0.0.1",
        "::ffff:0:7f00:1",
    ],
)
def test_non_public_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"]
)
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_loopback_is_refused_without_webhook_allow_private(
    start_services: StartServices, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    services, _ = start_services()

    # By address and by a name that resolves to loopback: the resolved address is what is checked.
    item_ids = enqueue(services, receiver.url()) + enqueue(services, receiver.url("localhost"))

    wait_for(lambda: webhook_states(services, item_ids) == ["given_up"] * 2, what="both calls given up")
    assert receiver.calls == []
    refusals = [r.getMessage() for r in caplog.records if "not public" in r.getMessage()]
    assert any("'127.0.0.1'" in message for message in refusals)
    assert any("'localhost'" in message and "webhook_allow_private" in message for message in refusals)


def test_a_call_connects_to_the_address_it_checked(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolves to another address on its second lookup (DNS rebinding) still reaches the first."""
    answers = iter(["127.0.0.1", "10.255.255.1"])
    resolve = socket.getaddrinfo

    def rebinding(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        assert host == "rebind.test"
        return resolve(next(answers), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    caller = WebhookCaller(timeout_s=5, allow_private=True)
    try:
        status = caller.post(caller.resolve(f"http://rebind.test:{receiver.port}/hook?x=1"), b"{}", {"X-Test": "1"})
    finally:
        caller.close()

    assert status == 200
    [call] = receiver.calls
    assert (call.path, call.headers["Host"], call.headers["X-Test"]) == (
        "/hook?x=1",
        f"rebind.test:{receiver.port}",
        "1",
    )


def test_a_name_that_resolves_only_to_private_addresses_is_refused(receiver: Receiver) -> None:
    caller = WebhookCaller(timeout_s=5, allow_private=False)
    try:
        with pytest.raises(WebhookAddressError, match=r"'localhost' resolves only to .*127\.0\.0\.1"):
            caller.resolve(receiver.url("localhost"))
    finally:
        caller.close()
    assert receiver.calls == []


def test_a_call_is_cut_at_its_deadline(hanging: HangingTarget) -> None:
    caller = WebhookCaller(timeout_s=0.3, allow_private=True)
    try:
        with pytest.raises(TimeoutError, match=r"no answer within 0\.3 s"):
            caller.post(caller.resolve(hanging.url()), b"{}", {})
    finally:
        caller.close()
    assert len(hanging.accepted) == 1


def test_calls_are_signed_over_the_timestamp_and_the_exact_body(
    start_services: StartServices, receiver: Receiver
) -> None:
    services, _ = start_services(webhook_allow_private=True, webhook_secret="s3cret")

    item_ids = enqueue(services, receiver.url(), runs=2)

    wait_for(lambda: len(receiver.calls) == 2, what="two calls")
    for call in receiver.calls:
        timestamp = call.headers["X-Nodeloom-Timestamp"]
        assert abs(int(timestamp) - time.time()) < 300
        expected = hmac.new(b"s3cret", timestamp.encode() + b"." + call.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(call.headers["X-Nodeloom-Signature"], f"sha256={expected}")
        assert call.headers["Content-Type"] == "application/json"
    assert receiver.item_ids() == item_ids
    wait_for(lambda: webhook_states(services, item_ids) == ["delivered"] * 2, what="the calls recorded")


def test_calls_are_unsigned_without_a_secret(start_services: StartServices, receiver: Receiver) -> None:
    services, _ = start_services(webhook_allow_private=True)

    enqueue(services, receiver.url())

    [call] = wait_for(lambda: receiver.calls, what="the call")
    assert "X-Nodeloom-Signature" not in call.headers and "X-Nodeloom-Timestamp" not in call.headers


def test_a_hanging_target_delays_no_other_and_its_calls_are_made_after_a_restart(
    start_services: StartServices, receiver: Receiver, hanging: HangingTarget, tmp_path: Path
) -> None:
    settings = {"webhook_allow_private": True, "webhook_timeout_s": 60.0, "webhook_senders": 4}
    services, _ = start_services(root=tmp_path / "root", **settings)

    stuck = enqueue(services, hanging.url(), runs=6)
    fast = enqueue(services, receiver.url(), runs=3)

    # Well before the hanging calls' 60 s timeout: they hold two senders (half), not all four.
    wait_for(lambda: receiver.item_ids() == fast, timeout=20, what="the fast target's calls")
    # Received is not yet recorded: a stop in between would leave the fast calls due, to be made again.
    wait_for(lambda: webhook_states(services, fast) == ["delivered"] * 3, what="the fast calls recorded")
    wait_for(lambda: len(hanging.accepted) >= 2, what="the hanging calls")
    assert len(hanging.accepted) == 2
    started = time.monotonic()
    Invoker(services).stop()
    assert time.monotonic() - started < 5  # the hanging calls were cut, not waited for
    assert [hanging.read_until_closed(connection) for connection in hanging.accepted] == [True, True]
    with sqlite3.connect(tmp_path / "root" / "databases" / "nodeloom.db") as db:
        due = db.execute("SELECT item_id FROM session_queue WHERE webhook_state = 'pending' ORDER BY item_id")
        assert [row[0] for row in due] == stuck
    db.close()

    port = hanging.port
    hanging.close()
    answering = Receiver(port)
    try:
        restarted, _ = start_services(root=tmp_path / "root", **settings)
        wait_for(lambda: answering.item_ids() == stuck, timeout=20, what="the calls after the restart")
        wait_for(lambda: webhook_states(restarted, stuck) == ["delivered"] * 6, what="the calls recorded")
    finally:
        answering.close()
    assert receiver.item_ids() == fast  # made once


def test_a_call_cut_by_a_crash_is_made_after_the_restart(tmp_path: Path, hanging: HangingTarget) -> None:
    root = tmp_path / "root"
    env = {**os.environ, "NODELOOM_WEBHOOK_ALLOW_PRIVATE": "true", "NODELOOM_WEBHOOK_TIMEOUT_S": "60"}

    def serve() -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "nodeloom", "serve", "--root", str(root), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=30, what="the server to answer")
        return process, url

    first, url = serve()
    try:
        batch = {"batch": {"graph": ADD_GRAPH, "callback_url": hanging.url()}}
        (item_id,) = httpx.post(f"{url}/api/v1/queue/default/enqueue_batch", json=batch).json()["item_ids"]
        wait_for(lambda: hanging.accepted, timeout=20, what="the call under way")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    port = hanging.port
    hanging.close()
    answering = Receiver(port)
    second, _ = serve()
    try:
        wait_for(lambda: answering.item_ids() == [item_id], timeout=20, what="the call after the restart")
        body = json.loads(answering.calls[0].body)
        assert (body["status"], body["outputs"]["sum"][0]["value"]) == ("completed", 101)
    finally:
        second.send_signal(signal.SIGINT)
        try:
            second.wait(timeout=30)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
        answering.close()


def test_an_item_retried_after_a_restart_gets_its_call(
    start_services: StartServices, receiver: Receiver, tmp_path: Path
) -> None:
    settings = {"webhook_allow_private": True, "webhook_sweep_interval_s": 0.1}
    services, _ = start_services(root=tmp_path / "root", **settings)
    batch = Batch.model_validate(
        {"graph": graph_json([{"id": "fail", "type": "test_fail"}]), "callback_url": receiver.url()}
    )
    [failed] = services.session_queue.enqueue_batch(DEFAULT_QUEUE_ID, batch, prepend=False).item_ids
    wait_for(lambda: receiver.item_ids() == [failed], what="the failed item's call")
    wait_for(lambda: webhook_states(services, [failed]) == ["delivered"], what="the call recorded")
    Invoker(services).stop()

    # After the restart no batch with a webhook is unfinished, so no event announces the retried item's end: the
    # sweep of the calls due makes it.
    restarted, _ = start_services(root=tmp_path / "root", **settings)
    assert restarted.session_queue.retry_items_by_id(DEFAULT_QUEUE_ID, [failed]).retried_item_ids == [failed]
    wait_for(lambda: len(receiver.item_ids()) == 2, what="the retried item's call")
    assert receiver.item_ids()[0] == failed


def test_a_call_due_when_the_queue_is_cleared_is_still_made(
    start_services: StartServices, hanging: HangingTarget
) -> None:
    services, _ = start_services(webhook_allow_private=True, webhook_tries=5, webhook_timeout_s=60.0)
    [item_id] = enqueue(services, hanging.url())
    wait_for(lambda: len(hanging.accepted) == 1, what="the call under way")

    # The item finished and its call is under way: the clear must not take the outcome the call sends.
    assert services.session_queue.clear(DEFAULT_QUEUE_ID).deleted == 0

    port = hanging.port
    hanging.close()  # the call breaks; its next try reaches the receiver that takes the port
    answering = Receiver(port)
    try:
        [call] = wait_for(lambda: answering.calls, what="the call after the clear")
        assert json.loads(call.body)["item_id"] == item_id
        assert json.loads(call.body)["status"] == "completed"
        wait_for(lambda: webhook_states(services, [item_id]) == ["delivered"], what="the call recorded")
    finally:
        answering.close()
    assert services.session_queue.clear(DEFAULT_QUEUE_ID).deleted == 1


def test_names_and_spellings_of_one_address_share_its_limit_and_other_ports_do_not(
    start_services: StartServices,
    receiver: Receiver,
    hanging: HangingTarget,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolve = socket.getaddrinfo

    def aliasing(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        # Every name under .test is another name of 127.0.0.1, as several DNS names of one server are.
        return resolve("127.0.0.1" if host.endswith(".test") else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", aliasing)
    services, _ = start_services(webhook_allow_private=True, webhook_timeout_s=60.0, webhook_senders=4)
    port = hanging.port

    stuck = [
        *enqueue(services, f"http://127.0.0.1:{port}/hook", runs=2),
        *enqueue(services, f"http://one.test:{port}/hook", runs=2),
        *enqueue(services, f"http://TWO.test:{port}/hook", runs=2),
        *enqueue(services, f"http://two.test:{port}/hook", runs=2),
    ]
    fast = enqueue(services, receiver.url(), runs=3)

    # One server behind four spellings holds two senders (its half), so the other port's calls get the rest.
    wait_for(lambda: receiver.item_ids() == fast, timeout=20, what="the other port's calls")
    wait_for(lambda: len(hanging.accepted) >= 2, what="the hanging calls")
    time.sleep(0.5)  # time for any further call to the hanging server to connect
    assert len(hanging.accepted) == 2
    assert webhook_states(services, stuck) == ["pending"] * len(stuck)


@dataclass
class ApiServer:
    """What of an API server sharing the database with others makes webhook calls: its own database connections,
    events tailing the database (so it hears every server's items finish), queue and webhook service."""

    db: DatabaseBase
    events: DatabaseEventService
    queue: SqlSessionQueue
    webhooks: HttpWebhookService

    def stop(self) -> None:
        self.webhooks.stop()
        self.events.stop()
        self.db.close()


@pytest.fixture
def api_servers(open_db: OpenDatabase) -> Iterator[list[ApiServer]]:
    """Two API servers on one database, their webhook services not yet started; stopped at teardown."""
    servers = []
    for _ in range(2):
        db = open_db()
        Migrator(db, MIGRATIONS).run()
        events = DatabaseEventService(db)
        events.start()
        queue = SqlSessionQueue(db=db, events=events)
        settings = WebhookSettings(allow_private=True, sweep_interval_s=0.05)
        servers.append(ApiServer(db, events, queue, HttpWebhookService(events, queue, settings)))
    yield servers
    for server in servers:
        server.stop()


def finish_all(queue: SqlSessionQueue) -> None:
    while (item := queue.dequeue("processor-1")) is not None:
        queue.complete_queue_item(item.item_id)


def states_of(db: DatabaseBase, item_ids: list[int]) -> list[str | None]:
    with db.read() as cursor:
        cursor.execute("SELECT item_id, webhook_state FROM session_queue ORDER BY item_id")
        states = {row["item_id"]: row["webhook_state"] for row in cursor.fetchall()}
    return [states.get(item_id) for item_id in item_ids]


def test_two_servers_make_each_due_call_once(api_servers: list[ApiServer], receiver: Receiver) -> None:
    first, second = api_servers
    for server in api_servers:
        server.webhooks.start()
    batch = Batch.model_validate({"graph": ADD_GRAPH, "runs": 40, "callback_url": receiver.url()})
    item_ids = first.queue.enqueue_batch(DEFAULT_QUEUE_ID, batch, prepend=False).item_ids

    # Both servers hear every item finish and both read the calls due at each sweep: only the claims keep them
    # from making a call twice.
    finish_all(second.queue)

    wait_for(lambda: states_of(first.db, item_ids) == ["delivered"] * 40, what="every call recorded")
    for server in api_servers:
        server.webhooks.stop()  # nothing under way is left to arrive after the count
    assert receiver.item_ids() == item_ids


def test_a_call_claimed_by_a_dead_server_is_made_by_another_once_the_claim_lapses(
    api_servers: list[ApiServer], receiver: Receiver
) -> None:
    dead, live = api_servers
    batch = Batch.model_validate({"graph": ADD_GRAPH, "callback_url": receiver.url()})
    [item_id] = dead.queue.enqueue_batch(DEFAULT_QUEUE_ID, batch, prepend=False).item_ids
    finish_all(dead.queue)
    # Claimed by a server on another machine that died before making the call: nothing here can tell it is gone.
    claimant = WebhookClaimant("another-host", 1, "2026-01-01T00:00:00.000000+00:00", "t").id
    assert dead.queue.claim_webhook(item_id, claimant, lease_s=1.0)
    with dead.db.read() as cursor:
        cursor.execute("SELECT webhook_claimed_until FROM session_queue WHERE item_id = ?", (item_id,))
        [row] = cursor.fetchall()
    lapses_at = datetime.fromisoformat(row["webhook_claimed_until"])

    live.webhooks.start()

    [call] = wait_for(lambda: receiver.calls, what="the call after the claim lapsed")
    assert json.loads(call.body)["item_id"] == item_id
    assert call.received_at >= lapses_at
    wait_for(lambda: states_of(live.db, [item_id]) == ["delivered"], what="the call recorded")
    live.webhooks.stop()
    assert len(receiver.calls) == 1
