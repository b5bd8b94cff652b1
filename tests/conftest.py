from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from tests.database_engines import OpenDatabase, empty_postgres_schema, scratch_postgres_database
from tests.helpers import free_port
from tests.tiny_model import build_tiny_sd, build_tiny_sdxl

from nodeloom.app.api.app import NodeloomApp, create_server
from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.events.events_common import EventBase
from nodeloom.app.services.invocation_services import InvocationServices, build_services
from nodeloom.app.services.invoker import Invoker
from nodeloom.app.services.shared.database.database_postgres import PostgresDatabase
from nodeloom.app.services.shared.database.database_sqlite import SqliteDatabase

load_builtin_nodes()
import tests.nodes  # noqa: E402,F401  registers the test-only node types


class Recorder:
    """Every event the bus delivered, in order."""

    def __init__(self) -> None:
        self.events: list[EventBase] = []

    def __call__(self, event: EventBase) -> None:
        self.events.append(event)

    def of(self, name: str) -> list[Any]:
        return [e for e in self.events if e.event_name == name]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A scratch PostgreSQL database for the test module, dropped after it."""
    with scratch_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def open_db(request: pytest.FixtureRequest, tmp_path: Path) -> OpenDatabase:
    """Each test that takes it runs on both engines, on a database of its own, empty."""
    if request.param == "sqlite":
        return lambda: SqliteDatabase(tmp_path / "nodeloom.db")
    url: str = request.getfixturevalue("postgres_url")
    empty_postgres_schema(url)
    return lambda: PostgresDatabase(url)


@pytest.fixture(params=["sqlite", "postgres"])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The settings that put several roots (servers, workers) on one database: a SQLite file, or an empty
    PostgreSQL schema."""
    if request.param == "sqlite":
        return {"db_file": tmp_path / "shared.db"}
    url: str = request.getfixturevalue("postgres_url")
    empty_postgres_schema(url)
    return {"database_url": url}


StartServices = Callable[..., tuple[InvocationServices, Recorder]]


@pytest.fixture
def start_services(tmp_path: Path) -> Iterator[StartServices]:
    """Builds and starts the real services on a root in `tmp_path`; stops every one started at teardown."""
    invokers: list[Invoker] = []

    def start(root: Path | None = None, **settings: Any) -> tuple[InvocationServices, Recorder]:
        settings.setdefault("processor_poll_interval_s", 0.05)
        services = build_services(load_config(root or tmp_path / "root", **settings))
        recorder = Recorder()
        services.events.subscribe(recorder)
        invoker = Invoker(services)
        invoker.start()
        invokers.append(invoker)
        return services, recorder

    yield start
    for invoker in invokers:
        services = invoker.services
        if services.session_processor.get_status().is_started or not services.config.run_processor:
            invoker.stop()


class LiveServer:
    """A real uvicorn server on 127.0.0.1, serving the real app on a root in a temp folder."""

    def __init__(self, root: Path, **settings: Any) -> None:
        settings.setdefault("processor_poll_interval_s", 0.05)
        # The tests' own node classes exist in this process only; worker processes are proven by `ServeProcess`.
        settings.setdefault("worker_processes", False)
        self.port = free_port()
        self.config = load_config(root, host="127.0.0.1", port=self.port, log_level="warning", **settings)
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = create_server(self.config)
        app = self._server.config.app
        assert isinstance(app, NodeloomApp)
        self.app = app
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    @property
    def server_state(self) -> uvicorn.server.ServerState:
        """uvicorn's connections and request tasks."""
        return self._server.server_state

    @property
    def services(self) -> InvocationServices:
        services: InvocationServices = self.app.state.services
        return services

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Starts servers with the given settings; stops them at teardown."""
    servers: list[LiveServer] = []

    def start(**settings: Any) -> LiveServer:
        server = LiveServer(tmp_path / f"root{len(servers)}", **settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def tiny_sd_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Stable Diffusion 1.x-architecture pipeline folder (diffusers layout), built once per test session.

    Shared by every test that asks for it: install it in place or copy it, never change it.
    """
    return build_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_sdxl_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny SDXL base and refiner pipeline folder (diffusers layout), built once per test session; shared, never
    to be changed."""
    return build_tiny_sdxl(tmp_path_factory.mktemp("sdxl-models"))
