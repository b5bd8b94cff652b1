from __future__ import annotations

import httpx
from tests.conftest import LiveServer


def test_app_routes(server: LiveServer) -> None:
    with httpx.Client(base_url=f"{server.url}/api/v1/app") as c:
        assert c.get("/version").json()["version"]
        assert c.get("/config").json()["max_queue_size"] == 10_000
        assert c.put("/invocation_cache/disable").status_code == 200
        assert c.get("/invocation_cache/status").json()["enabled"] is False
        assert c.put("/invocation_cache/enable").status_code == 200
        assert c.delete("/invocation_cache").status_code == 200
        assert c.get("/invocation_cache/status").json()["size"] == 0
