"""Safety at the edge, against a real server: hosts, origins (CORS) and tokens, over HTTP and socket.io."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from tests.app.api.image_api_helpers import encode
from tests.conftest import LiveServer
from tests.helpers import graph_json, wait_for

StartServer = Callable[..., LiveServer]

FOREIGN = "http://evil.example"
ALLOWED = "http://ui.example:5173"
TOKEN = "a-token-for-the-tests-0123456789"
UNAUTHORIZED = {"detail": "A valid token is needed: send it as 'Authorization: Bearer <token>'"}
PROMPT_GRAPH = graph_json([{"id": "p", "type": "string", "value": "a private prompt"}])


def connect(server: LiveServer, origin: str | None = None, **options: Any) -> socketio.Client:
    """A socket.io client on the websocket transport, connected to `server` and subscribed to the default queue.

    `origin` is sent as a browser would: it replaces the websocket client's own Origin header.
    """
    sio = socketio.Client(reconnection=False, websocket_extra_options={"origin": origin} if origin else {})
    try:
        sio.connect(server.url, socketio_path="/ws/socket.io", transports=["websocket"], wait_timeout=10, **options)
    except socketio.exceptions.ConnectionError:
        sio.disconnect()
        raise
    sio.call("subscribe_queue", {"queue_id": "default"}, timeout=10)
    return sio


def polling_connect(server: LiveServer, headers: dict[str, str], auth: dict[str, str] | None) -> str:
    """socket.io's polling handshake, by hand: the server's answer to the CONNECT packet ('40...' when connected,
    '44...' when refused), or the HTTP status that refused the transport.

    The socket.io client's polling transport waits on a long poll for up to half a minute when it disconnects.
    """
    base = f"{server.url}/ws/socket.io/?EIO=4&transport=polling"
    with httpx.Client(headers=headers, timeout=10) as http:
        opened = http.get(base)
        if opened.status_code != 200:
            return f"HTTP {opened.status_code}"
        session = f"{base}&sid={json.loads(opened.text[1:])['sid']}"
        assert http.post(session, content="40" + (json.dumps(auth) if auth else "")).text == "OK"
        answer = http.get(session).text
        http.post(session, content="1")
        return answer


def connects(
    server: LiveServer,
    transport: str,
    origin: str | None = None,
    headers: dict[str, str] | None = None,
    auth: dict[str, str] | None = None,
) -> bool:
    """Whether a client connects to socket.io over `transport` from a page at `origin` with these credentials."""
    if transport == "polling":
        answer = polling_connect(server, {**({"Origin": origin} if origin else {}), **(headers or {})}, auth)
        return answer.startswith("40")
    try:
        sio = connect(server, origin, headers=headers or {}, auth=auth)
    except socketio.exceptions.ConnectionError:
        return False
    sio.disconnect()
    return True


# --- Hosts --------------------------------------------------------------------------------------------------


def test_only_requests_for_this_server_s_own_names_are_answered(server: LiveServer) -> None:
    port = server.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", f"[::1]:{port}"):
        assert httpx.get(f"{server.url}/health", headers={"Host": host}).status_code == 200, host
    # A page on a name rebound to 127.0.0.1 sends its own name: it reaches nothing, socket.io included.
    rebound = (f"evil.example:{port}", "evil.example", f"127.0.0.1:{port + 1}", "localhost", f"localhost.ev:{port}")
    for host in rebound:
        for method, path in [
            ("GET", "/health"),
            ("GET", "/api/v1/queue/default/status"),
            ("POST", "/api/v1/boards/?board_name=rebound"),
            ("GET", "/ws/socket.io/?EIO=4&transport=polling"),
        ]:
            response = httpx.request(method, f"{server.url}{path}", headers={"Host": host})
            assert response.status_code == 421, (host, path)
            assert response.json() == {
                "detail": f"This server does not answer to the host '{host.lower()}': add it to the allowed_hosts "
                "setting to reach it so"
            }
    assert httpx.get(f"{server.url}/api/v1/boards/", params={"all": True}).json() == []
    # "²" is a digit to str.isdigit, and a Host header is read as Latin-1.
    assert httpx.get(f"{server.url}/health", headers={b"Host": b"localhost:\xb2"}).status_code == 421


def test_allowed_hosts_adds_names(live_server: StartServer) -> None:
    server = live_server(allowed_hosts=["nodeloom.lan", "other.lan:8443"])
    answers = {
        host: httpx.get(f"{server.url}/health", headers={"Host": host}).status_code
        for host in ("nodeloom.lan", "nodeloom.lan:1234", "other.lan:8443", "other.lan", "evil.example")
    }
    assert answers == {
        "nodeloom.lan": 200,
        "nodeloom.lan:1234": 200,
        "other.lan:8443": 200,
        "other.lan": 421,
        "evil.example": 421,
    }
    anything = live_server(allowed_hosts=["*"])
    assert httpx.get(f"{anything.url}/health", headers={"Host": "whatever.example"}).status_code == 200


# --- Origins ------------------------------------------------------------------------------------------------


def cross_site_requests(server: LiveServer) -> list[tuple[str, str, dict[str, Any]]]:
    """What a page on another site could send without a preflight, and what it could read."""
    return [
        ("POST", "/api/v1/images/upload", {"files": {"file": ("a.png", encode(), "image/png")}}),
        ("POST", "/api/v1/boards/", {"params": {"board_name": "pwned"}}),
        ("POST", "/api/v2/models/install", {"params": {"source": "/root"}}),
        ("DELETE", "/api/v2/models/install", {}),
        ("POST", "/api/v2/models/empty_model_cache", {}),
        ("POST", "/api/v1/queue/default/enqueue_batch", {"json": {"batch": {"graph": PROMPT_GRAPH}}}),
        ("GET", "/api/v1/queue/default/list", {}),
    ]


def test_a_page_on_another_site_can_neither_drive_nor_read_the_api(server: LiveServer) -> None:
    for origin in (FOREIGN, "null", f"{server.url}.evil.example", f"https://127.0.0.1:{server.port}"):
        for method, path, options in cross_site_requests(server):
            response = httpx.request(method, f"{server.url}{path}", headers={"Origin": origin}, **options)
            assert response.status_code == 403, (origin, path, response.text)
            assert response.json() == {
                "detail": f"Requests from web pages at {origin} are refused: add it to the allow_origins setting"
            }
            assert "access-control-allow-origin" not in response.headers
    # Without an Origin, the browser's Sec-Fetch-Site still marks what another site's page sent.
    for method, path, options in cross_site_requests(server)[:-1]:
        response = httpx.request(method, f"{server.url}{path}", headers={"Sec-Fetch-Site": "cross-site"}, **options)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["detail"] == "A request that another site's page sent may not change anything here"
    assert httpx.get(f"{server.url}/api/v1/boards/", params={"all": True}).json() == []
    assert httpx.get(f"{server.url}/api/v1/images/").json()["total"] == 0
    assert httpx.get(f"{server.url}/api/v1/queue/default/status").json()["queue"]["total"] == 0

    # The server's own pages, and clients that are no browser, go on working.
    own_page = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    created = httpx.post(f"{server.url}/api/v1/boards/", params={"board_name": "mine"}, headers=own_page)
    assert created.status_code == 201, created.text
    assert "access-control-allow-origin" not in created.headers
    linked = httpx.get(f"{server.url}/api/v1/boards/", params={"all": True}, headers={"Sec-Fetch-Site": "cross-site"})
    assert [board["board_name"] for board in linked.json()] == ["mine"]
    assert httpx.post(f"{server.url}/api/v1/boards/", params={"board_name": "script"}).status_code == 201


def test_an_allowed_origin_gets_cors_answers(live_server: StartServer) -> None:
    server = live_server(allow_origins=[ALLOWED])
    preflight = httpx.options(
        f"{server.url}/api/v1/boards/",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "authorization, content-type"
    assert preflight.headers["vary"] == "Origin"

    created = httpx.post(f"{server.url}/api/v1/boards/", params={"board_name": "ui"}, headers={"Origin": ALLOWED})
    assert created.status_code == 201, created.text
    assert (created.headers["access-control-allow-origin"], created.headers["vary"]) == (ALLOWED, "Origin")
    missing = httpx.get(f"{server.url}/api/v1/boards/nope", headers={"Origin": ALLOWED})
    assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == ALLOWED

    refused = httpx.options(
        f"{server.url}/api/v1/boards/", headers={"Origin": FOREIGN, "Access-Control-Request-Method": "POST"}
    )
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_socketio_lets_in_only_the_server_s_own_pages_and_allowed_origins(
    live_server: StartServer, transport: str
) -> None:
    server = live_server(allow_origins=[ALLOWED])
    assert not connects(server, transport, FOREIGN)
    assert not connects(server, transport, "null")
    assert connects(server, transport, ALLOWED)
    assert connects(server, transport, server.url)
    assert connects(server, transport)


def test_a_page_on_another_site_gets_no_events_while_the_server_s_own_page_does(server: LiveServer) -> None:
    with pytest.raises(socketio.exceptions.ConnectionError):
        connect(server, FOREIGN)
    # What such a page was after: another client's events, prompts included.
    own = connect(server, server.url)
    received: list[Any] = []
    own.on("*", lambda name, data: received.append(data))
    try:
        httpx.post(f"{server.url}/api/v1/queue/default/enqueue_batch", json={"batch": {"graph": PROMPT_GRAPH}})
        wait_for(lambda: "a private prompt" in str(received), what="the prompt's events")
    finally:
        own.disconnect()


# --- Tokens -------------------------------------------------------------------------------------------------


def test_with_tokens_every_route_but_health_and_the_docs_needs_one(live_server: StartServer) -> None:
    server = live_server(auth_tokens=[TOKEN, "another-token-for-the-tests-987"])
    url = server.url
    for path in ("/api/v1/queue/default/status", "/api/v2/models/", "/api/v1/nowhere", "/metrics"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"X": TOKEN}):
            refused = httpx.get(f"{url}{path}", headers=headers)
            assert (refused.status_code, refused.json()) == (401, UNAUTHORIZED), (path, headers)
            assert refused.headers["www-authenticate"] == "Bearer"
        for token in (TOKEN, "another-token-for-the-tests-987"):
            answer = httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == (404 if path == "/api/v1/nowhere" else 200), path
    refused = httpx.post(f"{url}/api/v1/boards/", params={"board_name": "x"})
    assert (refused.status_code, refused.json()) == (401, UNAUTHORIZED)

    for path in ("/health", "/openapi.json", "/docs"):
        assert httpx.get(f"{url}{path}").status_code == 200, path
    schema = httpx.get(f"{url}/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/api/v1/queue/{queue_id}/status"]["get"]["security"] == [{"bearer": []}]
    assert schema["paths"]["/metrics"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/health"]["get"]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_with_tokens_socketio_needs_one_in_its_header_or_auth_payload(live_server: StartServer, transport: str) -> None:
    server = live_server(auth_tokens=[TOKEN])
    assert not connects(server, transport)
    assert not connects(server, transport, auth={"token": "wrong"})
    assert not connects(server, transport, headers={"Authorization": "Bearer wrong"})
    # A token no text encoding takes (a lone surrogate, which JSON can carry) is a wrong token, not a broken check
    # that would leave the client half-connected.
    assert not connects(server, transport, auth={"token": "\ud800"})
    assert connects(server, transport, auth={"token": TOKEN})
    assert connects(server, transport, headers={"Authorization": f"Bearer {TOKEN}"})


def tokens_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodeloom", "tokens", *args, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_tokens_made_and_revoked_while_the_server_runs_count_at_once(server: LiveServer) -> None:
    status = f"{server.url}/api/v1/queue/default/status"

    def answer(token: str | None = None) -> int:
        return httpx.get(status, headers={} if token is None else {"Authorization": f"Bearer {token}"}).status_code

    assert answer() == 200  # no tokens yet: anyone who reaches the server may use it
    first = tokens_cli(server.config.root, "create", "first").stdout.strip()
    second = tokens_cli(server.config.root, "create", "second").stdout.strip()
    wait_for(lambda: answer() == 401, what="tokens to be on")
    assert answer(first) == answer(second) == 200
    assert answer("nlt_" + "x" * 43) == 401

    tokens_cli(server.config.root, "revoke", "first")
    wait_for(lambda: answer(first) == 401, what="the revocation")
    assert answer(second) == 200
    assert not connects(server, "websocket", auth={"token": first})
    assert connects(server, "websocket", auth={"token": second})

    # Only its hash is kept.
    database = server.config.db_path
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT name, token_hash FROM auth_tokens").fetchall()
    db.close()
    assert rows == [("second", hashlib.sha256(second.encode()).hexdigest())]
    stored = b"".join(path.read_bytes() for path in database.parent.glob(f"{database.name}*"))
    assert second.encode() not in stored
