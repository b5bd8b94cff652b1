"""The web UI's files, served by a real server at `/` next to the API, and the OpenAPI dump its types come from."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.conftest import LiveServer

from nodeloom.app.api.openapi_dump import openapi_json
from nodeloom.app.api.web_ui import DIST, UI_ROUTES, mount_web_ui

StartServer = Callable[..., LiveServer]
TOKEN = "a-token-for-the-web-ui-tests-0123"


def _asset_paths(index_html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/assets/[^"]+)"', index_html)


def test_the_committed_build_holds_every_file_its_index_names() -> None:
    index = (DIST / "index.html").read_text()
    assets = _asset_paths(index)
    assert any(path.endswith(".js") for path in assets), "the index loads no script"
    for path in assets:
        assert (DIST / path.lstrip("/")).is_file(), f"{path} is named by index.html but not built"


def test_each_page_of_the_ui_loads_the_app_and_its_assets_are_cached_long(live_server: StartServer) -> None:
    server = live_server()
    index = (DIST / "index.html").read_text()
    with httpx.Client(base_url=server.url) as client:
        for route in UI_ROUTES:
            response = client.get(route)
            assert response.status_code == 200, route
            assert response.text == index
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["cache-control"] == "no-cache"
        script = next(path for path in _asset_paths(index) if path.endswith(".js"))
        built = (DIST / script.lstrip("/")).read_bytes()
        for encoding in ("gzip, deflate", "identity"):
            asset = client.get(script, headers={"Accept-Encoding": encoding})
            assert asset.status_code == 200
            assert asset.content == built  # httpx undoes the gzip
            assert "javascript" in asset.headers["content-type"]
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert asset.headers.get("content-encoding") == ("gzip" if encoding.startswith("gzip") else None)
        compressed = int(client.get(script, headers={"Accept-Encoding": "gzip"}).headers["content-length"])
        assert compressed < len(built) / 2
        assert client.get("/assets/no-such-file.js").status_code == 404
        assert client.get("/assets/.hidden").status_code == 404


def test_the_ui_shadows_no_other_path(live_server: StartServer) -> None:
    server = live_server()
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/api/v1/no-such-route").json() == {"detail": "No API route /api/v1/no-such-route"}
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/openapi.json").json()["info"]["title"] == "nodeloom"
        assert "swagger" in client.get("/docs").text.lower()
        assert client.get("/metrics").headers["content-type"].startswith("text/plain")
        assert client.get("/api/v1/queue/default/status").json()["queue"]["queue_id"] == "default"
        # Only the UI's own routes load it: another path is no page of it.
        assert client.get("/queue/extra").status_code == 404
        assert client.get("/index.html").status_code == 404


def test_with_tokens_on_the_ui_loads_without_one_and_the_api_still_asks_for_it(live_server: StartServer) -> None:
    server = live_server(auth_tokens=[TOKEN])
    script = next(path for path in _asset_paths((DIST / "index.html").read_text()) if path.endswith(".js"))
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").status_code == 200
        assert client.get("/gallery").status_code == 200
        assert client.get(script).status_code == 200
        assert client.get("/api/v1/queue/default/status").status_code == 401
        authorized = client.get("/api/v1/queue/default/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert authorized.status_code == 200
        # The open paths are the UI's exactly: a path that merely starts like one is not.
        assert client.get("/queue-secrets").status_code == 401


def test_without_a_build_the_ui_routes_say_how_to_make_one(tmp_path: Path) -> None:
    app = FastAPI()
    mount_web_ui(app, dist=tmp_path / "dist")
    with TestClient(app) as client:
        response = client.get("/")
        assert response.status_code == 404
        assert "make web" in response.text
        assert client.get("/assets/index.js").status_code == 404


def test_the_openapi_dump_is_the_served_schema(live_server: StartServer) -> None:
    server = live_server()
    served = httpx.get(f"{server.url}/openapi.json").json()
    dumped = openapi_json()
    assert json.loads(dumped) == served
    assert dumped == openapi_json(), "two dumps differ: the generated types would churn"
